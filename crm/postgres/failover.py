"""Database errors that mean a connection no longer leads to a usable primary.

When the primary dies, or Patroni turns it into a standby, the connections
a process holds are of no further use, and the connection pool must not
hand them out again:

* a dead server: the session is gone (SQLSTATE class 08, or psycopg's own
  "server closed the connection unexpectedly", which carries no SQLSTATE);
* a server shutting down or restarting (Patroni demoting a primary, or
  promoting a standby restarts nothing but may stop an old primary): 57P01
  ``admin_shutdown``, 57P02 ``crash_shutdown``, 57P03 ``cannot_connect_now``;
* a primary demoted to a standby that kept the session: every write fails
  with 25006 ``read_only_sql_transaction``, while Django's check of a
  connection after an error (``SELECT 1``) passes, so the same connection
  would fail every later write until ``CONN_MAX_AGE`` ran out.

None of these is cured by the same connection: it is discarded
(:meth:`crm.postgres.base.DatabaseWrapper.close_if_unusable_or_obsolete`) and
the next request connects anew through the multi-host ``DATABASE_URL``, whose
``target_session_attrs=read-write`` finds the new primary. The request itself
is answered with a 503 and ``Retry-After`` (core.security.exceptions). Nothing
here retries a statement: a write whose COMMIT was under way may have been
saved, and only the client can find out (it re-reads, or resends with
``If-Match`` or the same ``customer_id``).
"""

from __future__ import annotations

import psycopg

#: Server errors after which the session leads nowhere useful.
LOST_SERVER_SQLSTATES = frozenset({"25006", "57P01", "57P02", "57P03"})

#: The one among them that says the server is up but no longer the primary.
READ_ONLY = "25006"


def _causes(exc: BaseException) -> list[BaseException]:
    """The error and what it wraps (Django's database errors wrap psycopg's)."""
    chain = [exc]
    if exc.__cause__ is not None:
        chain.append(exc.__cause__)
    return chain


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of ``exc`` or of the psycopg error it wraps."""
    for error in _causes(exc):
        state = getattr(error, "sqlstate", None)
        if state:
            return state
    return None


def lost_server(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection's server is gone, going, or no
    longer the primary (see the module's docstring)."""
    state = sqlstate(exc)
    if state is not None:
        return state in LOST_SERVER_SQLSTATES or state.startswith("08")
    # libpq's own connection failures carry no SQLSTATE; a psycopg
    # OperationalError with none is always one ("server closed the connection
    # unexpectedly", "the connection is closed", "consuming input failed").
    return any(isinstance(error, psycopg.OperationalError) for error in _causes(exc))


def read_only(exc: BaseException) -> bool:
    """Whether ``exc`` is a write refused by a server that is now a standby
    (nothing was written)."""
    return sqlstate(exc) == READ_ONLY
