"""Which request is which: an id per request, and who sent it.

Both depend on what the proxies in front of the application may be trusted
to say, which ``CRM_NUM_PROXIES`` declares (the same setting DRF's rate
limits read the client's address with):

* unset or 0: nothing in front; a client's ``X-Request-ID`` and
  ``X-Forwarded-For`` are its own claims and are not believed;
* N ≥ 1: N proxies, the last of which overwrites ``X-Request-ID`` (nginx:
  ``proxy_set_header X-Request-ID $request_id;``) and appends to
  ``X-Forwarded-For``; the application is reachable through them only.
"""

from __future__ import annotations

import logging
import re
import secrets

from django.conf import settings
from django.http import HttpRequest

logger = logging.getLogger(__name__)

HEADER = "X-Request-ID"
META_KEY = "HTTP_X_REQUEST_ID"

#: What an id from a proxy may look like (nginx's $request_id, a UUID, a
#: trace id): anything else is replaced, so that a log line never carries
#: control characters or an unbounded string from a request header.
VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=@-]{0,127}", re.ASCII)


def request_id(request: HttpRequest) -> str:
    """The proxy's id when a trusted proxy sent one, else a new one (32 hex digits)."""
    if settings.CRM_NUM_PROXIES:
        given = request.META.get(META_KEY)
        if given and VALID.fullmatch(given):
            return given
    return secrets.token_hex(16)


def client_address(request: HttpRequest) -> str | None:
    """The address of the client, counted back through ``CRM_NUM_PROXIES`` proxies.

    None when it cannot be known: the request carries ``X-Forwarded-For`` but
    no proxies are declared (a proxy nobody told us about, whose own address
    may well be loopback, or a client pretending to be one).
    """
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    proxies = settings.CRM_NUM_PROXIES
    if not forwarded:
        address = request.META.get("REMOTE_ADDR")
        if not address and not proxies:
            warn_undeclared_proxy("requests arrive without a client address (a Unix socket)")
        return address
    if not proxies:
        warn_undeclared_proxy("requests carry X-Forwarded-For")
        return None
    addresses = forwarded.split(",")
    return addresses[-min(proxies, len(addresses))].strip()


_warned = False


def warn_undeclared_proxy(evidence: str) -> None:
    """Say once per process, loudly, that a proxy seems to be in front while
    ``CRM_NUM_PROXIES`` is 0: the application cannot tell its clients apart
    (rate limits per address, /metrics' allowed addresses), and a log line
    per request would bury everything else."""
    global _warned
    if _warned:
        return
    _warned = True
    logger.warning(
        "%s but CRM_NUM_PROXIES is 0: a proxy seems to be in front, and the application "
        "cannot tell its clients' addresses apart. Set CRM_NUM_PROXIES to the number of "
        "proxies that set X-Forwarded-For (1 behind the README's nginx). "
        "This is said once per process.",
        evidence,
    )
