"""The valid staged rows into the tables of record: matched, compared, written set-based.

A handful of statements, whatever the file's size: customers matched by
``customer_id`` (or e-mail), compared with their read row (one table holds
all of a customer's columns), then updated where anything differs; new
customers inserted with ids drawn from the tables' own sequences, in an
order that lets the triggers write each new read row once (see
:mod:`core.customers.imports`).
"""

from __future__ import annotations

import json
from typing import Any

from django.db import models

from . import validation
from .fields import COLUMNS, WRITABLE, ImportField
from .reading import FILE, STAGING

OWN = [f for f in WRITABLE if f.group is None]
ADDRESS = [f for f in WRITABLE if f.group == "address"]
RECORD = [f for f in WRITABLE if f.group == "relationship"]


def typed(f: ImportField, alias: str = "s") -> str:
    """The staged cell of ``f`` as the column's type (an empty cell: NULL)."""
    cell = f"nullif({alias}.\"{f.staged}\", '')"
    field = f.field
    if isinstance(field, models.EmailField):
        return f"lower({cell})"
    if isinstance(field, models.DateTimeField):
        return f"{cell}::timestamptz"
    if isinstance(field, models.DateField):
        return f"{cell}::date"
    if isinstance(field, models.IntegerField):
        return f"{cell}::integer"
    if isinstance(field, models.CharField) and not field.null:
        return f"coalesce({alias}.\"{f.staged}\", '')"
    return cell


def listed(f: ImportField) -> str:
    """The read table's column of ``f`` (aliased l)."""
    return f"l.{f.column.column}"


def differs(f: ImportField) -> str:
    """Whether the file's cell of ``f`` differs from the customer's read row
    (a loyalty record's empty cell leaves it as it is: no difference)."""
    test = f"{typed(f)} IS DISTINCT FROM {listed(f)}"
    if f.group == "relationship":
        return f"(coalesce(s.\"{f.staged}\", '') <> '' AND {test})"
    return test


#: The fields that differ, by name: what :func:`compare` notes in ``s.changed``.
DIFFERENCES = (
    "array_remove(ARRAY["
    + ", ".join(f"CASE WHEN {differs(f)} THEN '{f.name}' END" for f in WRITABLE)
    + "]::text[], NULL)"
)


def changing(fields: list[ImportField]) -> str:
    """Whether the row changes any of ``fields`` (by the notes)."""
    names = ", ".join(f"'{f.name}'" for f in fields)
    return f"s.changed && ARRAY[{names}]::text[]"


ADDRESS_CHANGED, RECORD_CHANGED = changing(ADDRESS), changing(RECORD)
CHANGED = "cardinality(s.changed) > 0"


def assigned(f: ImportField, alias: str, value: str | None = None) -> str:
    """``f``'s column set to the file's value (or ``value``) where the notes
    say it differs, else to itself: a field the file does not change keeps a
    value a concurrent write gave it while this statement waited for its lock."""
    column = f.field.column
    return (
        f"{column} = CASE WHEN '{f.name}' = ANY(s.changed) "
        f"THEN {value or typed(f)} ELSE {alias}.{column} END"
    )


def matched(condition: str) -> str:
    """FROM the valid matched rows (s) and their customers' read rows (l), WHERE ``condition``."""
    return (
        f"FROM {STAGING} s JOIN core_customer_list l ON l.id = s.match_id "
        f"WHERE NOT s.invalid AND {condition}"
    )


POINTS = next(f for f in RECORD if isinstance(f.field, models.IntegerField))
ACTIVITY = next(f for f in RECORD if isinstance(f.field, models.DateTimeField))
#: A new record's values: the file's, else the defaults; a last activity
#: never before the record's creation (now).
NEW_RECORD = (
    f"coalesce({typed(POINTS)}, 0), now(), greatest(coalesce({typed(ACTIVITY)}, now()), now())"
)


def prepare(cursor, how: str, *, neutralised: bool) -> None:
    """The file's rows into the staging table, in one pass (each pass over a
    million rows costs seconds, a rewrite of them as many again):

    * each cell as the API would read it (``neutralised``: a CSV's, without
      the export's ``'`` in front of a would-be formula), and, for a CSV, the
      names of the cells a spreadsheet would run, as the file has them;
    * the customer the row matches: by customer_id (or, where that cell is
      empty, by e-mail address), or by e-mail address only (``how="email"``);
    * whether a rule might refuse it (the serializer then decides), and, if
      none would, which tables of record it changes (:func:`compare`)."""
    cells = ", ".join(
        (validation.unneutralised_sql(f) if neutralised else f'f."{f.staged}"')
        + f' AS "{f.staged}"'
        for f in COLUMNS
    )
    formulas = validation.formulas_sql() if neutralised else "'{}'::text[]"
    by_email = (
        "(SELECT u.id FROM core_appuser u WHERE u.email = lower(nullif(s.email, '')))"
        if how == "email"
        # Looked up one by one, for the few rows without a customer_id: a
        # hash of every customer's address cost 2.5 s a million rows.
        else "CASE WHEN coalesce(s.customer_id, '') = '' THEN (SELECT u.id FROM core_appuser u "
        "WHERE u.email = lower(nullif(s.email, ''))) END"
    )
    match_id = by_email if how == "email" else f"coalesce(by_id.id, {by_email})"
    by_id = (
        ""
        if how == "email"
        else "LEFT JOIN core_appuser by_id ON by_id.customer_id = nullif(s.customer_id, '')\n"
    )
    names = ", ".join(f'"{f.staged}"' for f in COLUMNS)
    staged = ", ".join(f's."{f.staged}"' for f in COLUMNS)
    changed = f"CASE WHEN v.suspect OR l.id IS NULL THEN '{{}}' ELSE {DIFFERENCES} END"
    cursor.execute(
        f"INSERT INTO {STAGING} (line, {names}, formulas, match_id, suspect, changed)\n"
        f"SELECT s.line, {staged}, s.formulas, m.id, v.suspect, {changed}\n"
        # OFFSET 0: each cell is read once, not again in each test that names it.
        f"FROM (SELECT f.line, {cells}, {formulas} AS formulas FROM {FILE} f OFFSET 0) s\n"
        f"{by_id}"
        f"CROSS JOIN LATERAL (SELECT {match_id} AS id OFFSET 0) m\n"
        "LEFT JOIN core_customer_list l ON l.id = m.id\n"
        # OFFSET 0: the test runs once a row, not once for each flag that reads it.
        f"CROSS JOIN LATERAL (SELECT {validation.suspect_sql()} AS suspect OFFSET 0) v"
    )


def compare(cursor, *, rows: str = "true") -> None:
    """Compare each valid matched row (of ``rows``) with its customer's read
    row once, and note the fields it changes: the counts, the dry run's
    changes and every statement of the merge then read the notes. A row that
    changes nothing is passed over without comparing it again, and a field
    that did not differ when the file was read is not written, whatever a
    concurrent write made of it since."""
    cursor.execute(
        f"UPDATE {STAGING} s SET changed = {DIFFERENCES} FROM core_customer_list l "
        f"WHERE l.id = s.match_id AND NOT s.invalid AND {rows}"
    )
    # Temporary tables are never analyzed by autovacuum: without statistics
    # the merge's joins are planned for a table of a few thousand rows (the
    # address merge of a million-row file ran for over nine minutes before
    # it was stopped, against about one with them).
    cursor.execute(f"ANALYZE {STAGING}")


def counts(cursor) -> tuple[int, int, int]:
    """(created, updated, unchanged) of the valid rows."""
    cursor.execute(
        f"SELECT count(*) FILTER (WHERE s.match_id IS NULL), "
        f"count(*) FILTER (WHERE s.match_id IS NOT NULL AND {CHANGED}), "
        f"count(*) FILTER (WHERE s.match_id IS NOT NULL AND NOT {CHANGED}) "
        f"FROM {STAGING} s WHERE NOT s.invalid"
    )
    return cursor.fetchone()


def changes(cursor, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` changes, field by field: ``{"line", "customer_id",
    "changes": {field: [old, new]}}`` (a new customer: every given field)."""
    pairs = []
    for f in WRITABLE:
        pairs.append(
            f"CASE WHEN (s.match_id IS NULL AND {typed(f)} IS NOT NULL) "
            f"OR '{f.name}' = ANY(s.changed) "
            f"THEN jsonb_build_object('{f.name}', jsonb_build_array(to_jsonb({listed(f)}), "
            f"to_jsonb({typed(f)}))) ELSE '{{}}'::jsonb END"
        )
    diff = " || ".join(pairs)
    cursor.execute(
        f"SELECT s.line, s.customer_id, {diff} FROM {STAGING} s "
        "LEFT JOIN core_customer_list l ON l.id = s.match_id "
        f"WHERE NOT s.invalid AND (s.match_id IS NULL OR {CHANGED}) ORDER BY s.line LIMIT %s",
        [limit],
    )
    # Django's cursor hands jsonb over as its text.
    return [
        {"line": line, "customer_id": customer_id, "changes": json.loads(diff)}
        for line, customer_id, diff in cursor.fetchall()
    ]


def write(cursor) -> None:
    """Write the valid rows: the matched customers that changed, then the new."""
    _update_matched(cursor)
    _insert_new(cursor)


def _update_matched(cursor) -> None:
    own = ", ".join(assigned(f, "u") for f in OWN)
    cursor.execute(
        f"UPDATE core_appuser u SET {own}, last_updated = now() "
        f"{matched(f'u.id = s.match_id AND {CHANGED}')}"
    )
    # An address only they live at changes; one they share is copied first
    # (the API's copy on write), so that the others keep theirs.
    sharing = (
        "EXISTS (SELECT FROM core_appuser o WHERE o.address_id = l.address_id AND o.id <> l.id)"
    )
    address = ", ".join(assigned(f, "a") for f in ADDRESS)
    cursor.execute(
        f"UPDATE core_address a SET {address} "
        f"{matched(f'a.id = l.address_id AND {ADDRESS_CHANGED} AND NOT {sharing}')}"
    )
    cursor.execute(
        f"UPDATE {STAGING} s SET new_address_id = "
        "nextval(pg_get_serial_sequence('core_address', 'id')) "
        f"FROM core_customer_list l WHERE l.id = s.match_id AND NOT s.invalid "
        f"AND {ADDRESS_CHANGED} AND {sharing}"
    )
    names = ", ".join(f.field.column for f in ADDRESS)
    values = ", ".join(typed(f) for f in ADDRESS)
    cursor.execute(
        f"INSERT INTO core_address (id, {names}) SELECT s.new_address_id, {values} "
        f"FROM {STAGING} s WHERE s.match_id IS NOT NULL AND s.new_address_id IS NOT NULL"
    )
    cursor.execute(
        f"UPDATE core_appuser u SET address_id = s.new_address_id FROM {STAGING} s "
        "WHERE u.id = s.match_id AND s.new_address_id IS NOT NULL"
    )
    # A record's cells the file leaves empty stay as they are (they differ
    # from nothing); a last activity is never before the record's creation
    # (the table's check).
    record = ", ".join(
        assigned(f, "r", f"greatest({typed(f)}, r.created)" if f is ACTIVITY else None)
        for f in RECORD
    )
    cursor.execute(
        f"UPDATE core_customerrelationship r SET {record} "
        f"{matched(f'r.appuser_id = s.match_id AND {RECORD_CHANGED}')}"
    )
    cursor.execute(
        "INSERT INTO core_customerrelationship (appuser_id, points, created, last_activity) "
        f"SELECT s.match_id, {NEW_RECORD} "
        f"{matched(f'l.relationship_created IS NULL AND {RECORD_CHANGED}')}"
    )


def _insert_new(cursor) -> None:
    """New customers, then their records, then their addresses: a customer's
    foreign key to its address is checked at commit, and the address's
    insert then writes each read row once, with the record (see
    core.read_table_triggers)."""
    cursor.execute(
        f"UPDATE {STAGING} SET "
        "new_id = nextval(pg_get_serial_sequence('core_appuser', 'id')), "
        "new_address_id = nextval(pg_get_serial_sequence('core_address', 'id')) "
        "WHERE match_id IS NULL AND NOT invalid"
    )
    own = ", ".join(f.field.column for f in OWN)
    values = ", ".join(typed(f) for f in OWN)
    cursor.execute(
        f"INSERT INTO core_appuser (id, {own}, address_id, created, last_updated) "
        f"SELECT s.new_id, {values}, s.new_address_id, now(), now() FROM {STAGING} s "
        "WHERE s.new_id IS NOT NULL ORDER BY s.line"
    )
    cursor.execute(
        "INSERT INTO core_customerrelationship (appuser_id, points, created, last_activity) "
        f"SELECT s.new_id, {NEW_RECORD} FROM {STAGING} s WHERE s.new_id IS NOT NULL"
    )
    names = ", ".join(f.field.column for f in ADDRESS)
    values = ", ".join(typed(f) for f in ADDRESS)
    cursor.execute(
        f"INSERT INTO core_address (id, {names}) SELECT s.new_address_id, {values} "
        f"FROM {STAGING} s WHERE s.new_id IS NOT NULL"
    )
