"""Nothing left behind: one load at a time (an advisory lock), and the shadow
tables and replaced tables a failed or killed load leaves, dropped by the next
load or by ``migrate``."""

from __future__ import annotations

import contextlib

from django.db import DatabaseError, connection, connections, transaction
from psycopg import sql

from core.models import Address, AppUser, CustomerRelationship, CustomerRow
from crm.postgres.transaction_settings import set_local

from .shadow import retired_name, shadow_name

#: pg_advisory_lock key held while a dataset is being replaced ("crm-gen").
DATASET_LOCK_KEY = 0x63726D2D67656E

#: How long a load (or migrate's clean-up) waits for another one's lock: a
#: killed load's session lets go within a second (client_connection_check_interval).
LOCK_WAIT = "3s"

#: The tables generate_data replaces, in the order they are loaded: the one
#: with the most index work (the list's read table) first, so its builds
#: overlap the other copies.
REPLACED_MODELS = (CustomerRow, AppUser, Address, CustomerRelationship)


def shadow_tables_drop(cursor) -> list[str]:
    """Drop the shadow tables of the replaced tables, and the replaced tables a
    swap retired but did not get to drop; the caller holds the dataset lock."""
    lives = [model._meta.db_table for model in REPLACED_MODELS]
    names = [shadow_name(live) for live in lives] + [retired_name(live) for live in lives]
    cursor.execute(
        "SELECT relname FROM pg_class WHERE relname = ANY(%s) "
        "AND relnamespace = current_schema()::regnamespace AND relkind = 'r' ORDER BY 1",
        [names],
    )
    found = [row[0] for row in cursor.fetchall()]
    drop_tables(cursor, found)
    return found


def drop_tables(cursor, tables: list[str]) -> None:
    if tables:
        cursor.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(
                sql.SQL(", ").join(map(sql.Identifier, tables))
            )
        )


def stray_shadows_drop(using: str = "default") -> list[str] | None:
    """Drop the shadow tables a killed generate_data left behind (``migrate`` calls this).

    Returns the tables dropped, or None when a load is running (its shadow
    tables are its work in progress, not strays).
    """
    conn = connections[using]
    if conn.vendor != "postgresql":
        return []
    with conn.cursor() as cursor:
        if not try_dataset_lock(cursor):
            return None
        try:
            return shadow_tables_drop(cursor)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [DATASET_LOCK_KEY])


def shadows_drop_after_failure() -> None:
    """After a failed load: drop its shadows, on this connection if it still
    works, else on a fresh one (the lock went with the broken session)."""
    try:
        with connection.cursor() as cursor:
            shadow_tables_drop(cursor)
        return
    except DatabaseError:
        connection.close()
    # Whatever remains is dropped by the next generate_data or migrate.
    with contextlib.suppress(DatabaseError):
        stray_shadows_drop()


def try_dataset_lock(cursor) -> bool:
    """Take the dataset lock, waiting up to LOCK_WAIT for a dying session to let go."""
    with transaction.atomic(using=cursor.db.alias):
        set_local(cursor, {"lock_timeout": LOCK_WAIT})
        try:
            with transaction.atomic(using=cursor.db.alias):
                cursor.execute("SELECT pg_advisory_lock(%s)", [DATASET_LOCK_KEY])
        except DatabaseError:
            return False
    return True


def stray_shadows_drop_after_migrate(
    sender, using: str, verbosity: int = 1, stdout=None, plan=None, **kwargs
) -> None:
    """``post_migrate``: ``migrate`` also drops what a killed generate_data left.

    ``flush`` sends the signal too (without a plan); it has no reason to.
    """
    if plan is None:
        return
    dropped = stray_shadows_drop(using)
    if stdout is None or verbosity < 1:
        return
    if dropped:
        stdout.write(
            f"  Dropped the shadow tables of an interrupted generate_data: {', '.join(dropped)}"
        )
    elif dropped is None:
        stdout.write("  A generate_data is loading data: its shadow tables are left to it.")
