"""Per-request limits on the database session, and database failures outside the API."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar

from django.conf import settings
from django.db import DatabaseError, OperationalError, connection
from django.db.backends.signals import connection_created
from django.http import HttpRequest, HttpResponse, JsonResponse

from crm.postgres import failover
from crm.postgres.config import request_limits
from crm.replicas import PRIMARY

logger = logging.getLogger(__name__)

#: The limits of the request this thread is serving (None outside a request).
_serving: ContextVar[dict[str, str] | None] = ContextVar("crm_request_limits", default=None)


def _limits() -> dict[str, str]:
    return request_limits(
        statement_timeout_ms=settings.CRM_STATEMENT_TIMEOUT_MS,
        lock_timeout_ms=settings.CRM_LOCK_TIMEOUT_MS,
    )


def _apply(wrapper, limits: dict[str, str]) -> None:
    """Set ``limits`` on the session (``set_config(…, false)``: for the session,
    not the transaction) and remember them on the connection wrapper."""
    with wrapper.cursor() as cursor:
        cursor.execute(
            "SELECT " + ", ".join("set_config(%s, %s, false)" for _ in limits),
            [item for pair in limits.items() for item in pair],
        )
    wrapper.crm_request_limits = limits


def _on_connection_created(sender, connection, **kwargs) -> None:
    """A new session of the primary: limited at once if a request opened it.

    Django opens a connection lazily, at its first query: after a connection
    outlived ``CONN_MAX_AGE`` or the server ended it, that is the first query
    of some request, after this middleware has looked. So the limit is set
    here, as the session starts, rather than by the middleware's check alone
    (which let exactly that request run without one).
    """
    connection.crm_request_limits = None
    limits = _serving.get()
    if limits is not None and connection.alias == PRIMARY:
        _apply(connection, limits)


connection_created.connect(_on_connection_created, dispatch_uid="crm.request_limits")


def session_limits_apply() -> None:
    """Put the request limits on this thread's session of the primary now: a
    worker's warm-up (core.api.warm_up), so that its first request does not
    spend a round trip on them. Not behind a transaction-mode pooler, where
    the limits are the role's."""
    if not settings.CRM_DATABASE_POOLER:
        connection.ensure_connection()
        _apply(connection, _limits())


class StatementTimeoutMiddleware:
    """Every statement a request runs is cancelled after ``CRM_STATEMENT_TIMEOUT_MS``,
    and after waiting ``CRM_LOCK_TIMEOUT_MS`` for a lock.

    The limits are set on the session once per database connection
    (connections persist across requests), so they cost no query per
    request: on every connection a request opens (see
    :func:`_on_connection_created`), and here on one that was opened outside
    a request (by a readiness probe, which runs ahead of this middleware).
    They apply to requests only: ``generate_data`` and ``migrate`` run
    outside this middleware and are not cut short. The API turns a cancelled
    query into a 503 (see core.security.exceptions); elsewhere (the admin)
    :meth:`process_exception` does.

    Replicas get the same limits when they connect (their connection
    options), and behind a transaction-mode pooler (``DATABASE_PGBOUNCER``) a
    session setting would stay on a server connection that other clients get
    next: the limits are the API role's own there (``manage.py
    database_role_settings``).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if settings.CRM_DATABASE_POOLER:
            return self.get_response(request)
        limits = _limits()
        if connection.connection is not None and (
            getattr(connection, "crm_request_limits", None) != limits
        ):
            try:
                _apply(connection, limits)
            except Exception:
                # The database is down: let the view fail the usual way (503).
                connection.crm_request_limits = None
        token = _serving.set(limits)
        try:
            return self.get_response(request)
        finally:
            _serving.reset(token)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A database failure in a view outside DRF's (the admin's): a 503 that
        says so, not a 500; a failover's too (a write on a primary that became
        a standby, see crm.postgres.failover). (The API's own views answer
        theirs in JSON.)"""
        if not isinstance(exception, OperationalError) and not (
            isinstance(exception, DatabaseError) and failover.lost_server(exception)
        ):
            return None
        logger.warning("database failure in %s: %s", request.path, exception)
        detail = "The database did not answer in time or is unavailable; try again shortly."
        headers = {"Retry-After": "5"}
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": detail}, status=503, headers=headers)
        return HttpResponse(detail, status=503, content_type="text/plain", headers=headers)
