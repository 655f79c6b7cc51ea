"""Typed readers of environment variables, for the settings.

Each reader takes the variable's name and a default, and raises
:class:`~crm.errors.ConfigurationError` naming the variable when its value is
malformed: a typo in a deployment's environment stops the process at start,
with one line that says which variable is wrong, instead of surfacing later as
a surprising default.

``environ`` is a parameter (``os.environ`` by default) so that the functions
that compute settings from several variables can be tested without touching
the process's own environment.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

from crm.errors import ConfigurationError

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def string(name: str, default: str = "", environ: Mapping[str, str] = os.environ) -> str:
    """The variable's value, or ``default`` when it is unset or empty."""
    return environ.get(name) or default


def boolean(name: str, default: bool, environ: Mapping[str, str] = os.environ) -> bool:
    value = environ.get(name, "")
    if value == "":
        return default
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise ConfigurationError(f"{name} must be one of 1/0, true/false, yes/no, on/off")


def integer(
    name: str,
    default: int,
    environ: Mapping[str, str] = os.environ,
    *,
    minimum: int | None = None,
) -> int:
    value = environ.get(name, "")
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {number}")
    return number


def items(name: str, default: list[str], environ: Mapping[str, str] = os.environ) -> list[str]:
    """A comma-separated list (blank items dropped)."""
    value = environ.get(name, "")
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def rate(name: str, default: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """A rate limit in DRF's notation (``60/minute``), or None for "none" / "off"."""
    value = environ.get(name) or default
    if value.lower() in {"none", "off"}:
        return None
    count, _, period = value.partition("/")
    if not count.isdigit() or period.strip()[:1] not in {"s", "m", "h", "d"}:
        raise ConfigurationError(
            f"{name} must be like 60/minute (requests per second, minute, hour or day), "
            f"or none, got {value!r}"
        )
    return value


def ip_networks(
    name: str, default: list[str], environ: Mapping[str, str] = os.environ
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A comma-separated list of IP addresses or networks (``127.0.0.1``, ``10.0.0.0/8``)."""
    networks = []
    for item in items(name, default, environ):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigurationError(
                f"{name} must list IP addresses or networks (such as 10.0.0.0/8), got {item!r}"
            ) from None
    return tuple(networks)


def choice(
    name: str, choices: tuple[str, ...], default: str, environ: Mapping[str, str] = os.environ
) -> str:
    value = environ.get(name) or default
    if value not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def secret_key(*, production: bool, environ: Mapping[str, str] = os.environ) -> str:
    """``DJANGO_SECRET_KEY``; in production, refuse to start without a real one
    rather than sign sessions and cursors with a key everyone knows."""
    key = environ.get("DJANGO_SECRET_KEY", "")
    if not production:
        return key or "django-insecure-development-only-key-never-use-in-production"
    if len(key) < 50 or key.startswith("django-insecure"):
        raise ConfigurationError(
            "DJANGO_SECRET_KEY must be set to a random value of at least 50 characters "
            "in production (python -c 'import secrets; print(secrets.token_urlsafe(64))')"
        )
    return key


def allowed_hosts(*, production: bool, environ: Mapping[str, str] = os.environ) -> list[str]:
    """``DJANGO_ALLOWED_HOSTS``; production names its hosts, a laptop has defaults."""
    if not production:
        return items(
            "DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"], environ
        )
    hosts = items("DJANGO_ALLOWED_HOSTS", [], environ)
    if not hosts:
        raise ConfigurationError("DJANGO_ALLOWED_HOSTS must list the host names in production")
    return hosts


def development_only(
    name: str, *, production: bool, environ: Mapping[str, str] = os.environ
) -> bool:
    """A switch that is on by default in development and may not be on in production."""
    value = boolean(name, not production, environ)
    if production and value:
        raise ConfigurationError(f"{name}=1 is for developer machines, not production")
    return value


def gunicorn_workers(environ: Mapping[str, str] = os.environ) -> int:
    """``GUNICORN_WORKERS``: gunicorn's worker processes, one per core plus one.

    Read by crm.gunicorn_conf, and by the settings whose defaults leave one
    worker free of any one user and of exports (a sync worker serves one
    request at a time, so workers are what a client can take).
    """
    return integer("GUNICORN_WORKERS", (os.cpu_count() or 1) + 1, environ, minimum=1)
