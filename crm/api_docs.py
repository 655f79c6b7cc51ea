"""Swagger UI and ReDoc: usable with nothing but a token, and fully offline.

The pages themselves hold no data, so they load for anyone; the schema they
show stays behind authentication (``SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]``).
The page fetches it with whatever credentials the visitor has: the admin
session's cookie, or an API token pasted into the field at the top of the
page (kept in the tab's ``sessionStorage``, sent as ``Authorization: Token …``
and handed to Swagger UI's Authorize so that "Try it out" carries it too).
Without either, the page says what to do instead of a bare 401.

Both pages are served with a Content-Security-Policy that lets them load from
this server only. The assets come from drf-spectacular-sidecar; ReDoc's
bundle is served through :func:`redoc_bundle`, which takes out the one address
it reaches for by itself (its side menu's logo on cdn.redoc.ly). The policy
would refuse that request, but a refused request is still attempted and shown
as an error in the browser's console; now none is made at all.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from pathlib import Path
from typing import Any

from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import condition
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

#: What the documentation pages may load: this server's files, their own inline
#: styles, the one inline script carrying the per-response nonce, and ReDoc's
#: search worker (a blob: URL). Nothing from any other host.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class DocumentationPage:
    """A documentation page: open to anyone, the schema fetched with credentials."""

    permission_classes = [AllowAny]

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().get(request, *args, **kwargs)
        nonce = secrets.token_urlsafe(16)
        response.data["csp_nonce"] = nonce
        response.data["sign_in_url"] = f"/admin/login/?next={request.path}"
        # The page tries the session only when there is one (no 401 to log).
        response.data["signed_in"] = request.user.is_authenticated
        response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.format(nonce=nonce)
        # Never cached: the page carries a nonce and, for a signed-in user, a CSRF token.
        response["Cache-Control"] = "no-store"
        return response


class SwaggerPage(DocumentationPage, SpectacularSwaggerView):
    template_name = "drf_spectacular/swagger_ui.html"


class RedocPage(DocumentationPage, SpectacularRedocView):
    template_name = "drf_spectacular/redoc.html"

    @staticmethod
    def _redoc_standalone() -> str:
        return reverse("redoc-bundle")


#: The sidecar's ReDoc bundle, and the addresses in it that the page would
#: request by itself: the side menu's logo (rendered whenever the menu is).
REDOC_BUNDLE = "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"
REDOC_CDN = re.compile(r"https://cdn\.redoc\.ly/[^\"'`\s]*")
#: What the logo becomes: an empty image, inline (the policy allows data:).
BLANK_IMAGE = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


@functools.cache
def _offline_redoc() -> tuple[bytes, str]:
    """The bundle without its CDN address, and its ETag (read once per process)."""
    path = finders.find(REDOC_BUNDLE)
    if path is None:
        raise FileNotFoundError(f"{REDOC_BUNDLE} not found: is drf_spectacular_sidecar installed?")
    text = REDOC_CDN.sub(BLANK_IMAGE, Path(path).read_text(encoding="utf-8"))
    content = text.encode()
    return content, f'"{hashlib.sha256(content).hexdigest()[:32]}"'


@condition(etag_func=lambda request: _offline_redoc()[1])
def redoc_bundle(request: HttpRequest) -> HttpResponse:
    """ReDoc's JavaScript, with the logo it would fetch from cdn.redoc.ly inlined.

    There is no ReDoc option that leaves the logo out, and a Content-Security-
    Policy only refuses the request after the browser has tried it.
    """
    response = HttpResponse(_offline_redoc()[0], content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=3600"
    return response


#: How each way of authenticating is explained in the schema, in this order
#: (Swagger UI's Authorize dialog lists them so: the token first).
SECURITY_SCHEMES = {
    "tokenAuth": (
        "An API token: `make run` prints one (T=…), `python manage.py create_api_user` "
        "makes more. Enter it here as `Token <key>`: the word Token, a space, the key. "
        "The field at the top of this page does that for you."
    ),
    "cookieAuth": (
        "Your admin session: sign in at /admin/ in this browser (staff users only) and the "
        "browser sends its cookie by itself. Nothing to enter here: a token pasted into "
        "this field would be sent as a cookie and ignored."
    ),
}


def token_scheme_first(result: dict, generator, request, public) -> dict:
    """Put the token first among the security schemes, each explained (a
    drf-spectacular post-processing hook: it sorts the schemes by name)."""
    schemes = result.get("components", {}).get("securitySchemes")
    if schemes:
        ordered = {name: schemes[name] for name in SECURITY_SCHEMES if name in schemes}
        ordered.update(schemes)
        for name, description in SECURITY_SCHEMES.items():
            if name in ordered:
                ordered[name] = {**ordered[name], "description": description}
        result["components"]["securitySchemes"] = ordered
    return result
