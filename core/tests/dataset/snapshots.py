"""What the dataset tests compare: table contents, schema, stray shadow tables."""

from __future__ import annotations

from django.db import connection

from core.models import Address, AppUser, CustomerRelationship, CustomerRow

MODELS = (Address, AppUser, CustomerRelationship, CustomerRow)
TABLES = [model._meta.db_table for model in MODELS]


def table_digest() -> dict[str, str]:
    """An md5 over every row of every table, in id order."""
    digests = {}
    with connection.cursor() as cursor:
        for model in MODELS:
            table = model._meta.db_table
            cursor.execute(
                f"SELECT count(*), md5(string_agg(t::text, E'\\n' "
                f"ORDER BY t.{model._meta.pk.column})) FROM {table} t"
            )
            digests[table] = cursor.fetchone()
    return digests


def schema_snapshot() -> list[tuple]:
    """Everything a load must carry over, of the four tables, by name and definition:
    indexes, constraints, columns (defaults, identity), statistics, storage
    parameters, comments, grants, triggers."""
    queries = [
        "SELECT tablename, indexname, indexdef FROM pg_indexes "
        "WHERE tablename = ANY(%(tables)s) ORDER BY 1, 2",
        "SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid) "
        "FROM pg_constraint WHERE conrelid = ANY(%(tables)s::regclass[]) ORDER BY 1, 2",
        "SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity, "
        "       identity_generation, pg_get_serial_sequence(table_name, column_name) "
        "FROM information_schema.columns WHERE table_name = ANY(%(tables)s) ORDER BY 1, 2",
        "SELECT stxrelid::regclass::text, stxname, pg_get_statisticsobjdef(oid) "
        "FROM pg_statistic_ext WHERE stxrelid = ANY(%(tables)s::regclass[]) ORDER BY 1, 2",
        "SELECT c.relname, c.reloptions, t.reloptions, obj_description(c.oid, 'pg_class'), "
        "       c.relacl::text "
        "FROM pg_class c LEFT JOIN pg_class t ON t.oid = c.reltoastrelid "
        "WHERE c.oid = ANY(%(tables)s::regclass[]) ORDER BY 1",
        "SELECT attrelid::regclass::text, attname, attstattarget, "
        "       col_description(attrelid, attnum) "
        "FROM pg_attribute WHERE attrelid = ANY(%(tables)s::regclass[]) AND attnum > 0 "
        "AND NOT attisdropped ORDER BY 1, 2",
        "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger "
        "WHERE tgrelid = ANY(%(tables)s::regclass[]) AND NOT tgisinternal ORDER BY 1, 2",
    ]
    snapshot = []
    with connection.cursor() as cursor:
        for query in queries:
            cursor.execute(query, {"tables": TABLES})
            snapshot += cursor.fetchall()
    return snapshot


def stray_tables() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_tables "
            "WHERE tablename LIKE '%%\\_\\_load' OR tablename LIKE '%%\\_\\_old' ORDER BY 1"
        )
        return [row[0] for row in cursor.fetchall()]
