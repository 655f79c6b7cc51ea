"""API errors as JSON: the database's failures become a 503 (a collision a 409), never a 500."""

from __future__ import annotations

import logging

import psycopg
from django.db import DatabaseError, OperationalError
from rest_framework import status
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler

from core.customers.services import is_collision
from crm.errors import DatabaseUnavailable
from crm.postgres import failover

logger = logging.getLogger(__name__)


def api_exception_handler(exc, context) -> Response | None:
    """DRF's handler, plus: a query cancelled by ``statement_timeout``, a lock
    not granted within ``lock_timeout`` and a database that cannot be reached
    are 503s with a message and ``Retry-After``, so that clients and load
    balancers back off instead of seeing a crash; so is a failover's (a
    primary gone, or turned into a standby: :mod:`crm.postgres.failover`).
    Every error is JSON."""
    response = exception_handler(exc, context)
    if response is None and not (
        isinstance(exc, OperationalError | psycopg.OperationalError)
        or (isinstance(exc, DatabaseError | psycopg.Error) and failover.lost_server(exc))
    ):
        return None  # a crash: Django's 500 (JSON under /api/, see crm.views)
    answer_in_json(context)
    if response is not None:
        return response
    # Django wraps psycopg's errors (the cause); the export's COPY runs on
    # psycopg's own cursor, whose errors arrive unwrapped.
    cause = exc.__cause__ if isinstance(exc, OperationalError) else exc
    if is_collision(exc):
        # A deadlock or serialization failure the view did not retry: the
        # database is fine, the request collided with another one.
        return Response(
            {
                "detail": "The request collided with a concurrent one; nothing was written. "
                "Try again."
            },
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(cause, psycopg.errors.QueryCanceled):
        detail = (
            "The query took longer than this server allows; narrow the filters, "
            "or page with the cursor instead of deep page numbers."
        )
    elif isinstance(cause, psycopg.errors.LockNotAvailable):
        # lock_timeout: the data is locked (a migration, a maintenance task).
        detail = "The data is locked by maintenance; try again shortly."
    elif failover.read_only(exc):
        logger.warning("the primary became a standby: %s", exc)
        detail = "The database is changing its primary; nothing was written. Try again shortly."
    elif write_outcome_unknown(exc, context):
        logger.warning("database connection lost during a write: %s", exc)
        detail = (
            "The database connection was lost during the write: it may or may not have been "
            "saved. Read the customer before writing again (a POST with the same customer_id "
            "is refused if it was saved; send If-Match with a PATCH, PUT or DELETE)."
        )
    else:
        logger.warning("database unavailable: %s", exc)
        detail = "The database is unavailable; try again shortly."
    return Response(
        {"detail": detail}, status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "5"}
    )


def write_outcome_unknown(exc: Exception, context) -> bool:
    """Whether a writing request lost its connection after it may have
    committed: the server neither refused the write (read-only) nor was
    unreachable from the start (no connection, nothing sent)."""
    request = context.get("request")
    return (
        request is not None
        and request.method not in ("GET", "HEAD", "OPTIONS")
        and not isinstance(exc, DatabaseUnavailable)
        and failover.lost_server(exc)
    )


def answer_in_json(context) -> None:
    """Errors are JSON in the documented shape, whatever the view renders when
    it succeeds (the schema's YAML, an export's CSV); a browser on the
    browsable API still gets its page."""
    request = context.get("request")
    if request is None:
        return
    renderer = getattr(request, "accepted_renderer", None)
    if isinstance(renderer, JSONRenderer | BrowsableAPIRenderer):
        return
    request.accepted_renderer = JSONRenderer()
    request.accepted_media_type = JSONRenderer.media_type
