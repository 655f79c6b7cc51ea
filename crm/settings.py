"""Settings, all read from the environment.

Defaults suit a developer laptop: the embedded PostgreSQL, ``DEBUG`` on, a
throwaway secret key. ``CRM_ENV=production`` switches to strict mode (see the
README's Configuration section for every variable).
"""

from __future__ import annotations

from pathlib import Path

from crm import env
from crm.observability import logs
from crm.postgres import config as database_config

BASE_DIR = Path(__file__).resolve().parent.parent

#: "development" (the default: a laptop) or "production" (strict: see below).
CRM_ENV = env.choice("CRM_ENV", ("development", "production"), "development")
PRODUCTION = CRM_ENV == "production"

DEBUG = env.boolean("DJANGO_DEBUG", not PRODUCTION)
SECRET_KEY = env.secret_key(production=PRODUCTION)
ALLOWED_HOSTS = env.allowed_hosts(production=PRODUCTION)

if PRODUCTION:
    # HTTPS only. TLS ends at the proxy in front of gunicorn, which must set
    # X-Forwarded-Proto (and strip it from clients).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.boolean("CRM_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.integer("CRM_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

#: The benchmarks (the ``bench`` app, and the original's list view it races at
#: /api/baseline/users/) are installed on developer machines only.
CRM_BENCHMARKS = env.development_only("CRM_BENCHMARKS", production=PRODUCTION)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "core",
    *(["bench"] if CRM_BENCHMARKS else []),
]

MIDDLEWARE = [
    # /healthz, /readyz and /metrics, ahead of the host check, the HTTPS
    # redirect and everything that might touch the database.
    "crm.observability.middleware.EndpointsMiddleware",
    # Request ids, timings, metrics and the request log (crm.observability).
    "crm.observability.middleware.RequestObservabilityMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and Swagger UI's static files when DEBUG is off.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.security.middleware.StatementTimeoutMiddleware",
    # A writing request's changes carry its user, id and source into the
    # history PostgreSQL keeps (core.history.context).
    "core.history.context.HistoryContextMiddleware",
    "crm.replicas.ReadYourWritesMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

#: The middleware of a token-authenticated request under /api/ (crm.wsgi):
#: MIDDLEWARE less what such a request never uses. No session, so no
#: session, CSRF, messages or session-user middleware (DRF authenticates the
#: token, and its views are CSRF-exempt); no page to frame; no static file.
#: Measured with bench_profile --instructions (docs/benchmarks/profile.md).
API_MIDDLEWARE = [
    path
    for path in MIDDLEWARE
    if path
    not in {
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    }
]

ROOT_URLCONF = "crm.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Project overrides of third-party templates (the offline ReDoc page).
        "DIRS": [BASE_DIR / "crm" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "crm.wsgi.application"
ASGI_APPLICATION = "crm.asgi.application"


# Every SQL statement of a request is cancelled after this (the API answers 503).
CRM_STATEMENT_TIMEOUT_MS = env.integer("CRM_STATEMENT_TIMEOUT_MS", 2000, minimum=0)
# ...and after waiting this long for a lock (a migration's, say), exports included:
# longer than PostgreSQL's deadlock_timeout (1 s), so that a deadlock is found
# (and the write retried) before the wait is given up.
CRM_LOCK_TIMEOUT_MS = env.integer("CRM_LOCK_TIMEOUT_MS", 1500, minimum=0)
# The export streams every matching row: its own, longer limit.
CRM_EXPORT_TIMEOUT_MS = env.integer("CRM_EXPORT_TIMEOUT_MS", 600_000, minimum=0)
# Exports one user may stream at once, across all workers (a 429 beyond).
CRM_EXPORT_CONCURRENCY = env.integer("CRM_EXPORT_CONCURRENCY", 2, minimum=1)
# A sync worker serves one request at a time, for as long as its client
# reads: what one user, and exports as a whole, may hold of one machine's
# workers at once (a 429 beyond). By default one fewer than the workers, so
# that one is always left for everybody else (see core.security.local_slots);
# neither is capped in development, where runserver's threads are not the
# limit (0: no cap).
_SPARE_WORKERS = max(1, env.gunicorn_workers() - 1) if PRODUCTION else 0
CRM_EXPORT_TOTAL = env.integer("CRM_EXPORT_TOTAL", _SPARE_WORKERS, minimum=0)
CRM_USER_CONCURRENCY = env.integer("CRM_USER_CONCURRENCY", _SPARE_WORKERS, minimum=0)
# What one user's requests may take of one machine's worker time, in ms per
# second on average (see core.security.worker_time): by default half the
# cores' worth (a worker per two cores, one with three workers on two), so
# that a user of expensive requests leaves the other half to everyone else;
# off in development (0).
_HALF_THE_CORES_MS = 1000 * max(1, (env.gunicorn_workers() - 1) // 2) if PRODUCTION else 0
CRM_USER_WORKER_MS = env.integer("CRM_USER_WORKER_MS", _HALF_THE_CORES_MS, minimum=0)

# DATABASE_URL when set, otherwise the embedded PostgreSQL 18; hot standbys
# for reads from DATABASE_REPLICA_URLS (see crm.postgres.config).
DATABASES = database_config.databases(
    statement_timeout_ms=CRM_STATEMENT_TIMEOUT_MS, lock_timeout_ms=CRM_LOCK_TIMEOUT_MS
)
# Behind a transaction-mode pooler (PgBouncer): the session settings and the
# statement timeout come from the database role (manage.py database_role_settings).
CRM_DATABASE_POOLER = env.boolean("DATABASE_PGBOUNCER", False)
DATABASE_ROUTERS = ["crm.replicas.ReplicaRouter"]
CRM_REPLICA_MAX_LAG_SECONDS = env.integer("CRM_REPLICA_MAX_LAG_SECONDS", 5)
CRM_REPLICA_CHECK_SECONDS = env.integer("CRM_REPLICA_CHECK_SECONDS", 2)
CRM_READ_YOUR_WRITES_SECONDS = env.integer("CRM_READ_YOUR_WRITES_SECONDS", 10)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

# WhiteNoise serves static files (admin, Swagger UI, ReDoc) straight from the
# apps' folders: no collectstatic step, also with DEBUG off.
WHITENOISE_USE_FINDERS = True
STATIC_ROOT = env.string("DJANGO_STATIC_ROOT") or None

# Redis, when REDIS_URL is set, is the cache every worker shares (and holds
# the throttles' counters); otherwise the counters live in PostgreSQL and the
# per-process memory cache holds nothing that must be shared.
REDIS_URL = env.string("REDIS_URL")
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # A Redis that does not answer is a cache miss within half a
            # second (core.security.authentication), not a hung request.
            "OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

#: Proxies in front of the application that set X-Forwarded-For (the
#: README's nginx: 1; none by default). They decide whose address the header
#: gives (rate limits, the metrics' allowed addresses) and whether
#: X-Request-ID is believed (crm.observability.request_ids). With none, the
#: client's address is the connection's: a client cannot pick a new address
#: per request by sending the header itself.
CRM_NUM_PROXIES = env.integer("CRM_NUM_PROXIES", 0, minimum=0)

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.security.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["core.security.permissions.CustomerPermissions"],
    # Writes carry nested objects that only JSON can: no form or multipart bodies.
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.JsonBodyParser"],
    # An unknown ?format= is a 400 naming it, not a 404.
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "core.api.renderers.StrictFormatNegotiation",
    "DEFAULT_RENDERER_CLASSES": [
        "core.api.renderers.FastJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # Counted in each worker, shared through PostgreSQL or Redis (see
    # core.security.throttling).
    "DEFAULT_THROTTLE_CLASSES": [
        "core.security.throttling.AnonThrottle",
        "core.security.throttling.UserThrottle",
    ],
    "NUM_PROXIES": CRM_NUM_PROXIES,
    "EXCEPTION_HANDLER": "core.security.exceptions.api_exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "CRM API",
    "DESCRIPTION": (
        "Customers with their address and loyalty record, at millions of rows. "
        "Authenticate with an API token (`Authorization: Token <key>`; `make run` prints one) "
        "or, in a browser, an admin session."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies get components of their own, without the read-only
    # fields (id, created): what a client generated from the schema sends.
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema is part of /api/: signed-in users only. Its two pages load for
    # anyone and fetch it with a token or the session (see crm.api_docs).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Served from drf-spectacular-sidecar's static files: no CDN needed.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The token lives in the tab's sessionStorage (crm.api_docs), not in
    # localStorage for good, which is what Swagger UI's persistAuthorization does.
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": False, "displayRequestDuration": True},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api.schema.add_common_responses",
        "crm.api_docs.token_scheme_first",
    ],
}

# Logs: text, or one JSON object per line; every line carries its request's
# id, none carries a query parameter's value (crm.observability.logs).
DJANGO_LOG_FORMAT = env.choice("DJANGO_LOG_FORMAT", ("text", "json"), "text")
DJANGO_LOG_LEVEL = env.choice(
    "DJANGO_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), "WARNING"
)
#: One line per request (method, path, status, times, user); in development
#: runserver writes its own.
CRM_ACCESS_LOG = env.boolean("CRM_ACCESS_LOG", PRODUCTION)
LOGGING = logs.logging_config(
    format=DJANGO_LOG_FORMAT, level=DJANGO_LOG_LEVEL, request_log=CRM_ACCESS_LOG
)

# Operations (crm.observability): probes, metrics, timings.
#: /readyz: the database must answer within this, and an answer is reused
#: for this long (so probes cost at most one statement a second per process).
CRM_READINESS_TIMEOUT_MS = env.integer("CRM_READINESS_TIMEOUT_MS", 500, minimum=1)
CRM_READINESS_CACHE_SECONDS = env.integer("CRM_READINESS_CACHE_SECONDS", 1, minimum=0)
#: /metrics answers these addresses and networks only.
CRM_METRICS_ALLOWED_IPS = env.ip_networks("CRM_METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
#: Server-Timing (db, app) on every response: on in development; in
#: production only when asked, since it tells anyone how long the database took.
CRM_SERVER_TIMING = env.boolean("CRM_SERVER_TIMING", not PRODUCTION)

# Your own runs' reports (generate_data, bench_list, bench_http, test screenshots):
# reports/ is ignored by git; published figures go to docs/benchmarks/ only when
# a command is pointed there (see core.run_records).
CRM_REPORTS_DIR = Path(env.string("CRM_REPORTS_DIR") or BASE_DIR / "reports")

# Up to this many estimated rows, the list counts exactly (see core.customers.plans).
CRM_EXACT_COUNT_THRESHOLD = env.integer("CRM_EXACT_COUNT_THRESHOLD", 10_000)
# An import through the API (POST /api/users/import/): the largest file it
# takes (bytes; 413 above; manage.py import_customers has no limit), and its
# statement timeout (ms), like an export's: a file of 100,000 customers takes
# a few seconds.
CRM_IMPORT_MAX_BYTES = env.integer("CRM_IMPORT_MAX_BYTES", 64 * 1024 * 1024, minimum=1)
CRM_IMPORT_TIMEOUT_MS = env.integer("CRM_IMPORT_TIMEOUT_MS", 600_000, minimum=1)
# A change of many customers (POST /api/users/bulk-update/): above this many
# matches it needs ?confirm= with their number; its statement timeout (ms).
CRM_BULK_CONFIRM_OVER = env.integer("CRM_BULK_CONFIRM_OVER", 1_000, minimum=0)
CRM_BULK_TIMEOUT_MS = env.integer("CRM_BULK_TIMEOUT_MS", 60_000, minimum=1)
# How many days of history `manage.py prune_history` keeps (0: all of it, until
# an operator prunes with --before); erasure events are kept whatever their age.
CRM_HISTORY_DAYS = env.integer("CRM_HISTORY_DAYS", 0, minimum=0)
# How long an API token's user and permissions are remembered per process
# (a revoked token or permission takes effect within this many seconds).
CRM_TOKEN_CACHE_SECONDS = env.integer("CRM_TOKEN_CACHE_SECONDS", 30)
# How long a new API token works, in days (0: until revoked); create_api_user
# --lifetime-days overrides it per token.
CRM_TOKEN_LIFETIME_DAYS = env.integer("CRM_TOKEN_LIFETIME_DAYS", 0, minimum=0)
# Requests per user (per address without valid credentials), counted across
# all workers (see core.security.throttling).
CRM_THROTTLE_RATES = {
    "anon": env.rate("CRM_THROTTLE_ANON", "60/minute"),
    "user": env.rate("CRM_THROTTLE_USER", "6000/minute"),
    # Failed sign-ins to the admin, per user name and address together.
    "login": env.rate("CRM_THROTTLE_LOGIN", "20/hour"),
    # Exports a user may start.
    "export": env.rate("CRM_THROTTLE_EXPORT", "30/hour"),
}
