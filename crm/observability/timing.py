"""Where a request's time went: its SQL statements, and the ``Server-Timing`` header.

The database time is measured around each statement by a Django execute
wrapper (:func:`record_query`) that the request middleware puts on every
database connection for the duration of the request: one pair of
``perf_counter`` calls and two additions per statement, nothing when no
request is being served.
"""

from __future__ import annotations

from time import perf_counter

from django.db import OperationalError
from psycopg.errors import QueryCanceled

from . import metrics
from .context import current


def record_query(execute, sql, params, many, context):
    """Django execute wrapper: add the statement's time to the current request's.

    A statement cancelled by ``statement_timeout`` is counted here, where it
    happens, whichever view or page ran it (the API answers it with a 503).
    """
    started = perf_counter()
    try:
        return execute(sql, params, many, context)
    except OperationalError as exc:
        if isinstance(exc.__cause__, QueryCanceled):
            metrics.STATEMENT_TIMEOUTS.inc()
        raise
    finally:
        request = current()
        if request is not None:
            request.db_seconds += perf_counter() - started
            request.queries += 1


def server_timing(seconds: float, db_seconds: float, queries: int) -> str:
    """``Server-Timing``: the database's share and the application's (the rest),
    in milliseconds, as a browser's network panel shows them."""
    return (
        f'db;dur={db_seconds * 1000:.2f};desc="{queries} queries", '
        f"app;dur={(seconds - db_seconds) * 1000:.2f}"
    )
