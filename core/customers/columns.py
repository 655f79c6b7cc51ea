"""The customer row the API shows, derived from the read table's declaration.

A row of the list is a customer with two nested objects, their ``address``
and their loyalty record (``relationship``, null for a customer without one),
read from one row of the read table (:class:`core.models.CustomerRow`). Its
fields are the read table's columns, named as their sources are and nested
as their tables join the customer (:func:`core.read_table.read_table`).
Everything that shows a customer derives from :data:`ROW`: the page query's
columns (:func:`row_expressions`), the API's JSON objects
(:func:`customer_rows`), the export's CSV columns and NDJSON objects
(:mod:`core.customers.export`), the serializers that document them
(:mod:`core.api.serializers`), and the benchmark's hand-written floor query.
A column declared in the read table is in every one of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import CharField, DateField, Expression, F, Func

from core.models import CustomerRow
from core.read_table import JoinKind, read_table


class IsoText(Func):
    """A date or timestamp as ISO 8601 text, formatted by PostgreSQL.

    Parsing a ``timestamptz`` into a Python datetime (psycopg) and formatting
    it back for JSON (DRF's encoder) costs about 8 µs per value in Python: a
    third of a 50-row page's time. ``to_json()`` formats it in C on the
    server, and the text passes through untouched. A date is cheaper to
    parse, but its trip through orjson's fallback to DRF's encoder still
    cost 7% of a first page's instructions (4.23 M to 3.91 M).
    """

    template = "(to_json(%(expressions)s) #>> '{}')"
    output_field = CharField()


@dataclass(frozen=True)
class Column:
    """One field of a customer row.

    ``name`` is its key in its JSON object; ``group`` the nested object it
    belongs to (``None`` for the customer's own fields); ``column`` its
    column in the read table ``core_customer_list``.
    """

    name: str
    group: str | None
    column: str
    #: A date or timestamp, sent as the ISO 8601 text PostgreSQL formats.
    iso_text: bool = False

    @property
    def flat_name(self) -> str:
        """Its name in a flat table (the CSV export): ``address_city``."""
        return f"{self.group}_{self.name}" if self.group else self.name

    def expression(self) -> Expression:
        return IsoText(self.column) if self.iso_text else F(self.column)


TABLE = read_table(CustomerRow)

#: The row, in the order the page query selects it: every column of the read
#: table but the join's keys, named as its source field, in its source's group.
ROW: tuple[Column, ...] = tuple(
    Column(
        column.source.name,
        TABLE.join_of(column).group,
        column.name,
        iso_text=isinstance(column.field, DateField),
    )
    for column in TABLE.shown()
)

#: The nested objects, in the order they follow the customer's own fields.
GROUPS: tuple[str, ...] = tuple(join.group for join in TABLE.joins[1:])

#: A group that may be missing (a customer without a loyalty record), and the
#: field whose null says so: one its table holds NOT NULL.
OPTIONAL_GROUPS: dict[str, str] = {
    join.group: next(c.source.name for c in join.columns if not c.source.null)
    for join in TABLE.joins
    if join.kind is JoinKind.ONE_TO_ONE
}


def field_names(group: str | None) -> list[str]:
    """The JSON keys of the customer (``None``) or of one nested object."""
    return [column.name for column in ROW if column.group == group]


def row_expressions(prefix: str = "_") -> dict[str, Expression]:
    """The row's columns as ORM annotations, named ``prefix`` + column.

    The prefix keeps the annotations from clashing with the model's own
    field names (Django refuses an annotation named like a field).
    """
    return {prefix + column.column: column.expression() for column in ROW}


def _row_builder_source() -> str:
    """The source of ``to_dict(values)``: one dict display for :data:`ROW`.

    For the first rows of ROW it reads::

        lambda v: {"id": v[0], …, "address": {"street": v[9], …},
                   "relationship": ({"points": v[14], …} if v[15] is not None else None)}
    """

    def display(group: str | None) -> str:
        items = [f"{c.name!r}: v[{i}]" for i, c in enumerate(ROW) if c.group == group]
        return "{" + ", ".join(items) + "}"

    parts = [display(None)[1:-1]]
    for group in GROUPS:
        value = display(group)
        marker = OPTIONAL_GROUPS.get(group)
        if marker is not None:
            index = next(i for i, c in enumerate(ROW) if c.group == group and c.name == marker)
            value = f"({value} if v[{index}] is not None else None)"
        parts.append(f"{group!r}: {value}")
    return "lambda v: {" + ", ".join(parts) + "}"


#: One row as the API's nested object. Generated from ROW, as ``dataclasses``
#: generates ``__init__``: a dict display costs a third of what building the
#: same dicts with ``dict(zip(names, values))`` costs (0.6 against 2 µs a row).
to_dict = eval(_row_builder_source())


def customer_rows(rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows selected in :data:`ROW` order as the API's nested JSON objects.

    A DRF ``ModelSerializer`` costs about 100 µs per customer with its nested
    address and record; :func:`to_dict` costs well under a microsecond, which
    keeps serialization far below the database time. Extra values after the
    row's columns (a cursor's key values) are ignored.
    """
    return [to_dict(values) for values in rows]
