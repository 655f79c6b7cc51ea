"""The request being served, as the rest of this package sees it (a context variable).

A context variable, not a thread-local, so that it follows a request through
threads (gunicorn's ``gthread`` workers) and tasks (ASGI) alike, and log
lines, the database timer and the metrics of one request all find the same
:class:`RequestContext` without anything being passed around.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import TYPE_CHECKING

from django.utils.functional import LazyObject, empty

if TYPE_CHECKING:  # the settings import this module: keep it light
    from django.http import HttpRequest


class RequestContext:
    """One request's id, and the time its database queries have taken so far."""

    __slots__ = ("db_seconds", "id", "queries", "request")

    def __init__(self, request_id: str, request: HttpRequest) -> None:
        self.id = request_id
        self.request = request
        self.db_seconds = 0.0
        self.queries = 0

    @property
    def user_id(self) -> int | None:
        """The authenticated user's id, if authentication has happened.

        Only looks: Django's ``request.user`` is lazy, and evaluating it here
        would cost a session query for a log line. DRF replaces it with the
        user it authenticated, which is then read.
        """
        user = self.request.__dict__.get("user")
        if isinstance(user, LazyObject):
            user = user._wrapped
            if user is empty:
                return None
        return getattr(user, "pk", None)


_current: ContextVar[RequestContext | None] = ContextVar("crm_request", default=None)

#: The request being served in this thread or task, or None.
current = _current.get


def bind(context: RequestContext) -> Token:
    return _current.set(context)


def unbind(**signal_arguments: object) -> None:
    """The request is over (Django's ``request_finished``: its response closed).

    Not when the middleware returns: Django logs a 4xx or 5xx ("Bad Request:
    /api/users/") after the middleware, and a streamed response's lines come
    later still; those lines belong to the request too.
    """
    _current.set(None)
