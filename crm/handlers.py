"""A WSGI handler with a shorter middleware chain for the API's token requests.

Every request of an API client carries ``Authorization: Token …`` and no
session: the session, CSRF, messages and session-user middleware find
nothing to do, yet each runs on every request. This handler sends such a
request under ``/api/`` through ``settings.API_MIDDLEWARE`` (MIDDLEWARE
without them) and everything else (the admin, the browsable API, the docs
pages, a request without a token) through the full chain. Both chains end
in the same URLs and views: authentication, permissions, rate limits,
timeouts, request ids, metrics and logs are the same.

The shorter chain is built by :class:`ChainHandler` from its own list,
where Django's handler reads ``settings.MIDDLEWARE``: the settings are never
swapped (this handler used ``django.test.utils.override_settings`` to build
it, a test utility in the serving path). A middleware that skipped the
browser-only ones per request was the other way; it costs each request a
call and a test per skipped middleware, where choosing a chain costs one
test per request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.urls import get_resolver
from django.utils.module_loading import import_string

logger = logging.getLogger("django.request")


def is_token_api_request(environ: dict) -> bool:
    """A request under /api/ that authenticates with a token."""
    return (
        environ.get("PATH_INFO", "").startswith("/api/")
        and environ.get("HTTP_AUTHORIZATION", "")[:6].lower() == "token "
    )


class ChainHandler(WSGIHandler):
    """Django's WSGI handler, its middleware chain built from ``middleware``.

    What ``BaseHandler.load_middleware`` does for a synchronous handler,
    from the list given rather than ``settings.MIDDLEWARE``: each middleware
    wraps the next (an exception in one becomes a response, as in Django),
    and its ``process_view``, ``process_template_response`` and
    ``process_exception`` hooks are collected in Django's order. A WSGI
    handler is synchronous, so a middleware that cannot run synchronously
    is refused.
    """

    def __init__(self, middleware: Sequence[str]) -> None:
        self.middleware = tuple(middleware)
        super().__init__()  # builds the chain (load_middleware)

    def load_middleware(self, is_async: bool = False) -> None:
        if is_async:
            raise ImproperlyConfigured("ChainHandler serves WSGI (synchronous) only")
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response)
        for path in reversed(self.middleware):
            factory = import_string(path)
            if not getattr(factory, "sync_capable", True):
                raise ImproperlyConfigured(f"Middleware {path} cannot run synchronously")
            try:
                instance = factory(handler)
            except MiddlewareNotUsed as exc:
                if settings.DEBUG:
                    logger.debug("MiddlewareNotUsed(%r): %s", path, exc or "")
                continue
            if instance is None:
                raise ImproperlyConfigured(f"Middleware factory {path} returned None.")
            if hasattr(instance, "process_view"):
                self._view_middleware.insert(0, instance.process_view)
            if hasattr(instance, "process_template_response"):
                self._template_response_middleware.append(instance.process_template_response)
            if hasattr(instance, "process_exception"):
                self._exception_middleware.append(instance.process_exception)
            handler = convert_exception_to_response(instance)
        self._middleware_chain = handler


class ApiAwareHandler(WSGIHandler):
    """Django's WSGI handler, with a second one for :func:`is_token_api_request`."""

    def __init__(self) -> None:
        super().__init__()
        self.api = ChainHandler(settings.API_MIDDLEWARE)
        # Django imports the URL map, and with it every view, serializer and
        # renderer (DRF, drf-spectacular), on the first request it resolves:
        # 200 ms of a fresh worker's first request, now paid before it.
        get_resolver().url_patterns  # noqa: B018 (imports the URL map)

    def __call__(self, environ, start_response):
        if is_token_api_request(environ):
            return self.api(environ, start_response)
        return super().__call__(environ, start_response)
