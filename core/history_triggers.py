"""The triggers that keep the history of every change, generated from the read table's declaration.

For each table of record and each event, one statement-level trigger with
transition tables: a statement that changes 100,000 loyalty records writes
their 100,000 events in one ``INSERT … SELECT``. The fields it records are
the ones the read table copies (:func:`core.read_table.listed`), named as
the API names them (``first_name``, ``address.city``,
``relationship.points``; a move is ``address.id``), so that a column added
to the declaration is in the history too.

An event holds only what changed: ``{"address.city": ["Wien", "Graz"]}``
for an update, every field's new value for an insert and its old one for a
delete. Old and new rows are paired by primary key (a ``FULL JOIN``, so a
statement that changes a key records the old row's deletion and the new
row's insertion). The diff is built once per row, behind ``OFFSET 0``:
without it PostgreSQL inlines the subquery and builds it twice, once for
the test that anything changed.

Who wrote it comes from the transaction's settings, ``crm.actor``,
``crm.request_id`` and ``crm.source``, which the application sets with
``set_config(…, true)`` in the same transaction (:mod:`core.history.context`);
they are read once per statement. Without them the source is ``database``.

An address change concerns every customer living there: one event each
(found by the customers' foreign key, as the read table's triggers find
them; a customer moving in rewrites the address, see
:mod:`core.read_table_triggers`, so that a concurrent change cannot miss
them), or one event concerning nobody for an address no one lives at yet.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import models

from core.read_table import Column, Join, JoinKind, ReadTable
from core.triggers import Trigger

EVENTS = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")

#: The transaction's context, read once per statement (missing settings are '').
CONTEXT = (
    "(SELECT nullif(current_setting('crm.actor', true), '')::integer AS actor, "
    "nullif(current_setting('crm.request_id', true), '') AS request_id, "
    "coalesce(nullif(current_setting('crm.source', true), ''), '0')::smallint AS source) c"
)


def history_triggers(
    table: ReadTable, event_model: type[models.Model], entities: Mapping[type[models.Model], int]
) -> list[Trigger]:
    """Every trigger that records the changes of ``table``'s sources as
    ``event_model`` rows, each source as its entity in ``entities``."""
    triggers = []
    for join in table.joins:
        for event in EVENTS:
            name = f"{join.table.removeprefix('core_')}_{event.lower()}_history"
            body = _body(table, join, event, event_model._meta.db_table, entities[join.model])
            triggers.append(Trigger(name, join.table, event, body))
    return triggers


def field_name(table: ReadTable, join: Join, column: Column) -> str:
    """A recorded field's name, as the API names it: the customer's own
    (``first_name``), an address's or a record's under its object
    (``address.city``), and the customer's link to their address ``address.id``."""
    if column.is_relation:
        target = next(j for j in table.joins if j.link == column.source_column)
        return f"{target.group}.id"
    if join.group is None:
        return column.source.name
    return f"{join.group}.{column.source.name}"


def recorded(table: ReadTable, join: Join) -> list[tuple[str, str]]:
    """(API name, source column) of each field a source's events record."""
    return [
        (field_name(table, join, column), column.source_column)
        for column in join.columns
        if not column.field.primary_key
    ]


def changes(fields: list[tuple[str, str]], old: str, new: str) -> str:
    """The jsonb of the fields whose values differ between the rows ``old``
    and ``new`` (aliases, or NULL for an insert's old row or a delete's new)."""

    def value(side: str, column: str) -> str:
        return "NULL" if side == "NULL" else f"{side}.{column}"

    parts = [
        f"CASE WHEN {value(old, column)} IS DISTINCT FROM {value(new, column)} "
        f"THEN jsonb_build_object('{name}', jsonb_build_array({value(old, column)}, "
        f"{value(new, column)})) ELSE '{{}}'::jsonb END"
        for name, column in fields
    ]
    return "\n            || ".join(parts)


def _body(table: ReadTable, join: Join, event: str, events: str, entity: int) -> str:
    columns = "at, entity, row_id, customer_id, kind, changes, actor_id, request_id, source"
    if event == "TRUNCATE":
        return (
            f"    INSERT INTO {events} ({columns})\n"
            f"    SELECT statement_timestamp(), {entity}, NULL, NULL, 'T', '{{}}'::jsonb, "
            "c.actor, c.request_id, c.source\n"
            f"    FROM {CONTEXT};"
        )
    pk = join.pk
    old, new, rows, kind = {
        "INSERT": ("NULL", "n", "new_rows n", "'I'"),
        "DELETE": ("o", "NULL", "old_rows o", "'D'"),
        "UPDATE": (
            "o",
            "n",
            f"new_rows n FULL JOIN old_rows o ON o.{pk} = n.{pk}",
            f"CASE WHEN o.{pk} IS NULL THEN 'I' WHEN n.{pk} IS NULL THEN 'D' ELSE 'U' END",
        ),
    }[event]
    key = {"INSERT": f"n.{pk}", "DELETE": f"o.{pk}", "UPDATE": f"coalesce(n.{pk}, o.{pk})"}[event]
    link = join.link
    if join.kind is JoinKind.ROOT:
        customer, concerned = "d.row_id", ""
    elif join.kind is JoinKind.ONE_TO_ONE:
        of = {
            "INSERT": f"n.{link}",
            "DELETE": f"o.{link}",
            "UPDATE": f"coalesce(n.{link}, o.{link})",
        }
        customer, concerned = "d.customer", f", {of[event]} AS customer"
    else:
        customer, concerned = "u.id", ""
    diff = changes(recorded(table, join), old, new)
    sql = (
        f"    INSERT INTO {events} ({columns})\n"
        f"    SELECT statement_timestamp(), {entity}, d.row_id, {customer}, d.kind, d.changes, "
        "c.actor, c.request_id, c.source\n"
        f"    FROM (\n"
        f"        SELECT {key} AS row_id, {kind} AS kind{concerned},\n"
        f"            {diff} AS changes\n"
        f"        FROM {rows}\n"
        f"        OFFSET 0\n"
        f"    ) d\n"
    )
    if join.kind is JoinKind.MANY_TO_ONE:
        # Every customer living at the row: an event each (or one for nobody).
        sql += f"    LEFT JOIN {table.root.table} u ON u.{link} = d.row_id\n"
    sql += f"    CROSS JOIN {CONTEXT}"
    if event == "UPDATE":
        # An update that changed none of the recorded fields is no event.
        sql += "\n    WHERE d.kind <> 'U' OR d.changes <> '{}'::jsonb"
    return sql + ";"
