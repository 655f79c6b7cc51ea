"""A WSGI handler with a shorter middleware chain for the API's token requests.

Every request of an API client carries ``Authorization: Token …`` and no
session: the session, CSRF, messages and session-user middleware find
nothing to do, yet each runs on every request. This handler sends such a
request under ``/api/`` through ``settings.API_MIDDLEWARE`` (MIDDLEWARE
without them) and everything else (the admin, the browsable API, the docs
pages, a request without a token) through the full chain. Both chains end
in the same URLs and views: authentication, permissions, rate limits,
timeouts, request ids, metrics and logs are the same.
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.test.utils import override_settings


def is_token_api_request(environ: dict) -> bool:
    """A request under /api/ that authenticates with a token."""
    return (
        environ.get("PATH_INFO", "").startswith("/api/")
        and environ.get("HTTP_AUTHORIZATION", "")[:6].lower() == "token "
    )


class ApiAwareHandler(WSGIHandler):
    """Django's WSGI handler, with a second one for :func:`is_token_api_request`."""

    def __init__(self) -> None:
        super().__init__()
        # Django builds a handler's chain from settings.MIDDLEWARE, once.
        with override_settings(MIDDLEWARE=settings.API_MIDDLEWARE):
            self.api = WSGIHandler()

    def __call__(self, environ, start_response):
        if is_token_api_request(environ):
            return self.api(environ, start_response)
        return super().__call__(environ, start_response)
