"use strict";
{% comment %}
Replaces drf-spectacular's initialisation: the schema comes from the
credentials bar (token or session), and the token is handed to Authorize.
{% endcomment %}
const swaggerSettings = {{ settings|safe }};

// Keep the bar's token in step with Swagger UI's own Authorize dialog.
const tokenFollowsAuthorize = () => ({
  statePlugins: {
    auth: {
      wrapActions: {
        authorize: (original) => (payload) => {
          const scheme = payload && payload.tokenAuth;
          if (scheme && scheme.value) crmCredentials.remember(crmCredentials.clean(scheme.value));
          return original(payload);
        },
        logout: (original) => (names) => {
          if (names && names.includes("tokenAuth")) crmCredentials.remember("");
          return original(names);
        },
      },
    },
  },
});

// Writes signed in by session need Django's CSRF token; token requests do not.
const requestInterceptor = (request) => {
  if (!["GET", undefined].includes(request.method) && request.credentials === "same-origin") {
    request.headers["{{ csrf_header_name }}"] = "{{ csrf_token }}";
  }
  return request;
};

crmCredentials.load("{{ schema_url|escapejs }}").then((spec) => {
  window.ui = SwaggerUIBundle({
    spec,
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    plugins: [tokenFollowsAuthorize],
    layout: "BaseLayout",
    requestInterceptor,
    ...swaggerSettings,
  });
  if (crmCredentials.token()) {
    window.ui.preauthorizeApiKey("tokenAuth", "Token " + crmCredentials.token());
  }
});
