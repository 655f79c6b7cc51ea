"""What the dataset tests compare: table contents, schema, stray shadow tables."""

from __future__ import annotations

from django.db import connection

from core.models import Address, AppUser, CustomerRelationship


def table_digest() -> dict[str, str]:
    """An md5 over every row of every table, in id order."""
    digests = {}
    with connection.cursor() as cursor:
        for model in (Address, AppUser, CustomerRelationship):
            table = model._meta.db_table
            cursor.execute(
                f"SELECT count(*), md5(string_agg(t::text, E'\\n' "
                f"ORDER BY t.{model._meta.pk.column})) FROM {table} t"
            )
            digests[table] = cursor.fetchone()
    return digests


def schema_snapshot() -> list[tuple]:
    """Every index and constraint of the three tables, by name and definition."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes "
            "WHERE tablename LIKE 'core_%%' ORDER BY 1, 2"
        )
        indexes = cursor.fetchall()
        cursor.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE conrelid::regclass::text LIKE 'core_%%' ORDER BY 1, 2"
        )
        return indexes + cursor.fetchall()


def stray_tables() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE '%%__load%%'")
        return [row[0] for row in cursor.fetchall()]
