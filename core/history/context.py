"""Who writes: the context the history's events carry (actor, request id, source).

The history triggers (:mod:`core.history_triggers`) read three settings of
the transaction, ``crm.actor``, ``crm.request_id`` and ``crm.source``. The
application sets them with ``set_config(…, true)``: local to the
transaction, so that they hold behind PgBouncer in transaction mode (a
transaction keeps its server connection) and never outlive it on a pooled
connection, where the next request's transaction starts without them.

They are set in front of each write statement, in the same statement text
(``SELECT set_config(…); UPDATE …``), by an execute wrapper on the
primary's connection (:func:`writing_as`, and for a request
:class:`HistoryContextMiddleware`): a transaction's first write may come
from any code path (a service, the admin's save, the ORM), and a write
outside ``atomic`` is a transaction of its own. A statement with two
results returns the second's to Django (see :func:`_inject`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import psycopg
from django.db import connections
from django.http import HttpRequest, HttpResponse

from core.models import HistoryEvent
from crm.observability import context as request_context
from crm.replicas import PRIMARY

Source = HistoryEvent.Source

#: Statements that may write a table of record (and so fire its triggers).
WRITES = ("insert", "update", "delete", "merge")

SET_CONTEXT = (
    "SELECT set_config('crm.actor', %s, true), set_config('crm.request_id', %s, true), "
    "set_config('crm.source', %s, true); "
)


@dataclass(frozen=True)
class Writer:
    """Who writes: the source, the acting user's id, the request's (or the import's) id."""

    source: Source
    actor: int | None = None
    request_id: str | None = None

    def settings(self) -> list[str]:
        return [
            "" if self.actor is None else str(self.actor),
            self.request_id or "",
            str(int(self.source)),
        ]


#: The writer of this thread's (or task's) writes, where one is known.
_writer: ContextVar[Callable[[], Writer] | None] = ContextVar("crm_history_writer", default=None)


def current_writer() -> Writer | None:
    find = _writer.get()
    return None if find is None else find()


def _inject(execute, sql, params, many, context):
    """Put the writer's settings in front of a write statement (see the module docstring)."""
    writer = current_writer()
    cursor = context["cursor"]
    if (
        writer is None
        or many
        or not isinstance(sql, str)
        or not sql.lstrip()[:6].lower().startswith(WRITES)
        or getattr(cursor, "name", None)  # a named (server-side) cursor takes one statement
        or cursor.connection.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    ):
        return execute(sql, params, many, context)
    if isinstance(params, dict):
        # Named parameters throughout (psycopg refuses a mix).
        names = ("crm_history_actor", "crm_history_request_id", "crm_history_source")
        prefix = SET_CONTEXT.replace("%s", "%({})s").format(*names)
        params = {**params, **dict(zip(names, writer.settings(), strict=True))}
    else:
        prefix = SET_CONTEXT
        if params is None:
            # Without parameters the statement's own % signs were text; with
            # the context's they would be placeholders.
            sql = sql.replace("%", "%%")
        params = [*writer.settings(), *(params or ())]
    result = execute(prefix + sql, params, many, context)
    # psycopg positions the cursor on the first result (set_config's): move
    # to the statement's own, whose rows (RETURNING id) and rowcount Django reads.
    while result is not None and result.nextset():
        pass
    return result


@contextmanager
def writing_as(writer: Writer | Callable[[], Writer]) -> Iterator[None]:
    """Writes to the primary in this block carry ``writer`` (or what it returns
    at each write) into the history: a management command's, an import's."""
    find = writer if callable(writer) else (lambda: writer)
    token = _writer.set(find)
    primary = connections[PRIMARY]
    try:
        with primary.execute_wrapper(_inject):
            yield
    finally:
        _writer.reset(token)
        if primary.in_atomic_block and not primary.needs_rollback and _usable(primary):
            # The block ends inside a transaction that goes on (a test's, or
            # ATOMIC_REQUESTS'): what it wrote carried its writer; what follows
            # must not.
            with primary.cursor() as cursor:
                cursor.execute(SET_CONTEXT.rstrip("; "), ["", "", ""])


def _usable(wrapper) -> bool:
    """Whether the connection's transaction can still run a statement."""
    raw = wrapper.connection
    return raw is not None and raw.info.transaction_status != psycopg.pq.TransactionStatus.INERROR


#: Methods that may write.
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def request_writer() -> Writer:
    """The writer of the request being served: the API or the admin, the
    user it authenticated (DRF's token user once the view has run its
    authentication), and the request's id."""
    serving = request_context.current()
    if serving is None:
        return Writer(Source.DATABASE)
    path = serving.request.path
    source = Source.ADMIN if path.startswith("/admin/") else Source.API
    return Writer(source, serving.user_id, serving.id)


class HistoryContextMiddleware:
    """The writes of a request that may write (POST, PUT, PATCH, DELETE) carry
    its user, its id and whether it came through the API or the admin.

    A reading request installs nothing: it costs the list nothing.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method not in UNSAFE_METHODS:
            return self.get_response(request)
        with writing_as(request_writer):
            return self.get_response(request)
