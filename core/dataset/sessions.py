"""The load's database sessions: what each one sets, and connections of its own.

The load runs on Django's connection (the copies and the swap) and on
``--jobs`` connections of its own (:mod:`.builds`); each session sets what
the load needs itself (:func:`load_settings`), so that a load needs nothing
of the server's configuration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
from django.db import connection

#: PostgreSQL's application_name on the load's sessions, for pg_stat_activity.
APPLICATION_NAME = "generate_data"


def load_settings(
    maintenance_work_mem: str, server_version: int, lz4_wal: bool = False
) -> dict[str, str]:
    """What the load sets on each of its sessions, so that it needs nothing of
    the server's configuration (the embedded server's ALTER SYSTEM tuning
    included). A DBA's part, what cannot be set per session, is in docs/operations.md.

    * ``maintenance_work_mem``: index builds sort in memory (a server's
      default of 64 MB makes a 3M-row build spill to disk and wait on it);
    * ``max_parallel_maintenance_workers``: 0, the connections are the
      parallelism; the last build standing gets the idle ones' share
      (see :mod:`.builds`);
    * ``synchronous_commit``: the load's many commits do not wait for the WAL
      to reach the disk; nothing is lost by that, because the swap (which
      keeps the server's setting) waits for everything before it;
    * ``enable_hashjoin``: off, for the foreign keys' validation, which joins
      every referencing key to the referenced ones: both sides have a b-tree
      in key order, and a merge join reads them in order, where a hash join
      (which an untuned server's planner picks, its ``random_page_cost``
      making index scans look dear) hashes 3M keys first: 3 s instead of
      1.5 s on PostgreSQL 15. Index builds and ANALYZE make no joins;
    * ``statement_timeout``, ``lock_timeout``, ``idle_in_transaction_session_timeout``:
      none (the API's per-request limits must not cut a load short);
    * ``client_connection_check_interval`` (PostgreSQL 14+): a killed
      generate_data's statements stop within a second instead of running to
      their end;
    * ``jit``: off, compiling the validation queries costs more than it saves;
    * ``wal_compression``: lz4 when the server has it and the role may set it
      (``lz4_wal``; superusers, or ``GRANT SET ON PARAMETER``). Where the WAL
      carries the load (any ``wal_level`` but minimal), index builds log every
      page whole: compressed, 1.4 GiB of WAL instead of 1.9 at 3M rows, and
      the load about a fifth faster on an untuned PostgreSQL 15.
    """
    settings = {
        "application_name": APPLICATION_NAME,
        "maintenance_work_mem": maintenance_work_mem,
        "max_parallel_maintenance_workers": "0",
        "synchronous_commit": "off",
        "enable_hashjoin": "off",
        "statement_timeout": "0",
        "lock_timeout": "0",
        "idle_in_transaction_session_timeout": "0",
        "jit": "off",
        "timezone": "UTC",
    }
    if server_version >= 140000:
        settings["client_connection_check_interval"] = "1s"
    if lz4_wal:
        settings["wal_compression"] = "lz4"
    return settings


def may_compress_wal_with_lz4(cursor) -> bool:
    """Whether this server knows lz4 WAL compression and this role may set it."""
    cursor.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'wal_compression'")
    if not cursor.fetchone()[0]:
        return False
    if cursor.connection.info.server_version >= 150000:
        cursor.execute("SELECT has_parameter_privilege('wal_compression', 'SET')")
    else:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    return bool(cursor.fetchone()[0])


def separate_connection() -> psycopg.Connection:
    """A connection of its own to the project's database (Django's settings), in autocommit."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


@contextlib.contextmanager
def cursor_or_new(cursor) -> Iterator:
    """The given cursor, or a new one of Django's connection."""
    if cursor is not None:
        yield cursor
    else:
        with connection.cursor() as new:
            yield new
