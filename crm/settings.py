"""Settings, all read from the environment.

Defaults suit a developer laptop: the embedded PostgreSQL, ``DEBUG`` on, a
throwaway secret key. ``CRM_ENV=production`` switches to strict mode (see the
README's Configuration section for every variable).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url

from crm.errors import ConfigurationError
from crm.postgres import embedded

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{name} must be one of 1/0, true/false, yes/no, on/off")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {value!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


#: "development" (the default: a laptop) or "production" (strict: see below).
CRM_ENV = os.environ.get("CRM_ENV", "development")
if CRM_ENV not in {"development", "production"}:
    raise ConfigurationError(f"CRM_ENV must be development or production, got {CRM_ENV!r}")
PRODUCTION = CRM_ENV == "production"

DEBUG = env_bool("DJANGO_DEBUG", not PRODUCTION)
if PRODUCTION:
    # Refuse to start rather than sign sessions and cursors with a known key.
    SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
    if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure"):
        raise ConfigurationError(
            "DJANGO_SECRET_KEY must be set to a random value of at least 50 characters "
            "in production (python -c 'import secrets; print(secrets.token_urlsafe(64))')"
        )
    ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", [])
    if not ALLOWED_HOSTS:
        raise ConfigurationError("DJANGO_ALLOWED_HOSTS must list the host names in production")
else:
    SECRET_KEY = os.environ.get(
        "DJANGO_SECRET_KEY", "django-insecure-development-only-key-never-use-in-production"
    )
    ALLOWED_HOSTS = env_list(
        "DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"]
    )

if PRODUCTION:
    # HTTPS only. TLS ends at the proxy in front of gunicorn, which must set
    # X-Forwarded-Proto (and strip it from clients).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("CRM_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("CRM_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "core",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and Swagger UI's static files when DEBUG is off.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.middleware.StatementTimeoutMiddleware",
    "crm.replicas.ReadYourWritesMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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


# Database: DATABASE_URL when set, otherwise the embedded PostgreSQL 18.
def database_from_url(url: str, source: str) -> dict:
    """Parse a PostgreSQL URL, naming ``source`` (the variable) in every error."""
    try:
        parts = urlsplit(url)
        config = dj_database_url.parse(url, conn_max_age=0)
    except ValueError as exc:
        raise ConfigurationError(f"{source} is malformed: {exc}") from None
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ConfigurationError(
            f"{source} must be a postgresql:// URL (this project runs on PostgreSQL only), "
            f"got scheme {parts.scheme or 'none'!r}"
        )
    if not config.get("NAME"):
        raise ConfigurationError(
            f"{source} names no database (postgresql://user:password@host:port/DATABASE)"
        )
    config["ENGINE"] = "crm.postgres"
    config["SOURCE"] = source
    return config


DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    default_database = database_from_url(DATABASE_URL, "DATABASE_URL")
else:
    data_dir = embedded.default_data_dir()
    default_database = {
        "ENGINE": "crm.postgres",
        "NAME": "crm",
        "USER": "postgres",
        "EMBEDDED_DATA_DIR": str(data_dir),
        "SOURCE": f"the embedded PostgreSQL in {data_dir}",
    }
if os.environ.get("DATABASE_NAME"):
    default_database["NAME"] = os.environ["DATABASE_NAME"]
# Persistent connections: a new PostgreSQL connection costs a few
# milliseconds (a process fork on the server), more than a list request.
default_database["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
default_database["CONN_HEALTH_CHECKS"] = True
if env_bool("DATABASE_POOL", False):
    # psycopg's pool (Django 5.1+): for threaded servers; it replaces
    # persistent connections, which Django refuses to combine with it.
    default_database["CONN_MAX_AGE"] = 0
    default_database.setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DATABASE_POOL_MIN", 2),
        "max_size": env_int("DATABASE_POOL_MAX", 8),
        "timeout": 5,
    }
# Behind PgBouncer in transaction mode a session may change server connection
# between transactions: named server-side cursors cannot survive that. The
# export streams with COPY, not a cursor, so it keeps streaming either way.
default_database["DISABLE_SERVER_SIDE_CURSORS"] = env_bool("DATABASE_PGBOUNCER", False)
# The API's queries read at most a few thousand index entries under a LIMIT.
# For those, starting parallel workers costs more than they save (measured:
# ?city=vienna&page=3 took 27 ms with two workers, 4 ms without), so this
# project's sessions plan serial queries unless told otherwise.
# ?search= ranks by trigram similarity; 0.25 (pg_trgm's default is 0.3) lets
# "jon" find "John" (similarity 0.29) while "smiht" already finds "Smith" (0.33).
default_database.setdefault("OPTIONS", {})["options"] = (
    f"-c max_parallel_workers_per_gather={env_int('DATABASE_PARALLEL_WORKERS', 0)} "
    "-c pg_trgm.similarity_threshold=0.25"
)
default_database["TEST"] = {"NAME": os.environ.get("DATABASE_TEST_NAME") or None}
DATABASES = {"default": default_database}

# Hot-standby replicas for reads (see crm.replicas).
for number, url in enumerate(env_list("DATABASE_REPLICA_URLS", []), start=1):
    replica = database_from_url(url, f"DATABASE_REPLICA_URLS (replica {number})")
    if os.environ.get("DATABASE_NAME"):
        replica["NAME"] = os.environ["DATABASE_NAME"]
    replica["CONN_MAX_AGE"] = default_database["CONN_MAX_AGE"]
    replica["CONN_HEALTH_CHECKS"] = True
    # Only requests read from replicas, so the request limit is the session's default.
    replica["OPTIONS"] = {
        # The replica URL's own parameters (?host=/socket/dir&port=…, sslmode).
        **replica.get("OPTIONS", {}),
        "options": default_database["OPTIONS"]["options"]
        + f" -c statement_timeout={env_int('CRM_STATEMENT_TIMEOUT_MS', 2000)}",
        # Wait at most this long for a replica that is down before falling back.
        "connect_timeout": 2,
    }
    if "pool" in default_database["OPTIONS"]:
        replica["OPTIONS"]["pool"] = default_database["OPTIONS"]["pool"]
    replica["TEST"] = {"MIRROR": "default"}
    DATABASES[f"replica_{number}"] = replica
DATABASE_ROUTERS = ["crm.replicas.ReplicaRouter"]
CRM_REPLICA_MAX_LAG_SECONDS = env_int("CRM_REPLICA_MAX_LAG_SECONDS", 5)
CRM_REPLICA_CHECK_SECONDS = env_int("CRM_REPLICA_CHECK_SECONDS", 2)
CRM_READ_YOUR_WRITES_SECONDS = env_int("CRM_READ_YOUR_WRITES_SECONDS", 10)

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
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT") or None

# Redis, when REDIS_URL is set, is the cache every worker shares (and holds
# the throttles' counters); otherwise the counters live in PostgreSQL and the
# per-process memory cache holds nothing that must be shared.
REDIS_URL = os.environ.get("REDIS_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["core.permissions.CustomerPermissions"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # With Redis, DRF's own throttles in the shared cache; without, counters
    # in PostgreSQL (one atomic statement a request, see core.throttling).
    "DEFAULT_THROTTLE_CLASSES": (
        ["core.throttling.RedisAnonThrottle", "core.throttling.RedisUserThrottle"]
        if REDIS_URL
        else ["core.throttling.AnonThrottle", "core.throttling.UserThrottle"]
    ),
    "NUM_PROXIES": env_int("CRM_NUM_PROXIES", 0) if os.environ.get("CRM_NUM_PROXIES") else None,
    "EXCEPTION_HANDLER": "core.exceptions.api_exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "CRM API",
    "DESCRIPTION": "Customers with their address and loyalty record, at millions of rows.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its pages are part of /api/: signed-in users only (log in
    # at /admin/ for the browser, or send a token).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Served from drf-spectacular-sidecar's static files: no CDN needed.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Swagger UI's "Authorize" takes the token as "Token <key>" (the tokenAuth
    # scheme drf-spectacular derives from the token authentication class).
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.schema.add_common_responses",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "WARNING")},
}

# Benchmark and load reports (generate_data, bench_list, bench_http).
CRM_REPORTS_DIR = Path(os.environ.get("CRM_REPORTS_DIR") or BASE_DIR / "reports")

# The customer list (see core.api).
CRM_PAGE_SIZE = 50
CRM_EXACT_COUNT_THRESHOLD = env_int("CRM_EXACT_COUNT_THRESHOLD", 10_000)
# How long an API token's user and permissions are remembered per process
# (a revoked token or permission takes effect within this many seconds).
CRM_TOKEN_CACHE_SECONDS = env_int("CRM_TOKEN_CACHE_SECONDS", 30)
# Requests per user (per IP without credentials), counted across all workers.
CRM_THROTTLE_RATES = {
    "anon": os.environ.get("CRM_THROTTLE_ANON", "60/minute"),
    "user": os.environ.get("CRM_THROTTLE_USER", "6000/minute"),
}
# Every SQL statement of a request is cancelled after this (the API answers 503).
CRM_STATEMENT_TIMEOUT_MS = env_int("CRM_STATEMENT_TIMEOUT_MS", 2000)
# The export streams every matching row: its own, longer limit.
CRM_EXPORT_TIMEOUT_MS = env_int("CRM_EXPORT_TIMEOUT_MS", 600_000)
# Route the original system's list view at /api/baseline/users/ for bench_list.
CRM_BASELINE_API = env_bool("CRM_BASELINE_API", True)
