"""The list's read table, declared once: each column says where it comes from
and how the list uses it; everything else is derived.

:class:`core.models.CustomerRow` is one row per customer: their own columns,
their address's, their loyalty record's. Each of its columns is declared with
:func:`listed`, naming the field of a table of record it copies
(``listed(Address.city)``) and what the list does with it: filter it, sort by
it, search it. From those declarations, and from the model's ``Meta.indexes``,
this module derives what used to be written out in a dozen places:

* the tables of record as the read table joins them (:class:`Join`): the
  customer, their address (many customers to one), their loyalty record
  (one to one, optional);
* the triggers that keep the read table equal to that join
  (:func:`core.read_table_triggers.listed_triggers`);
* the row the API shows (:mod:`core.customers.columns`), the filters
  (:mod:`core.customers.filters`), the orderings and the orders the b-trees hold
  (:mod:`core.customers.ordering`), the searched columns
  (:mod:`core.customers.search`), the planning sample's columns
  (:mod:`core.customers.sample`), the known values (:class:`core.models.SearchTerm`).

Adding a column the list shows, filters, sorts and searches is one
``listed(...)`` line (and the source field, and an index if it sorts), then
``makemigrations``: see ``docs/list-query.md``, "Adding a column".
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import models


class Filter(enum.Enum):
    """How ``?<column>=`` filters a column (see :mod:`core.customers.filters`)."""

    #: Equal to the value, as the source field stores it (its ``get_prep_value``).
    EXACT = "exact"
    #: A substring, any case, looked up among the column's known values first
    #: (:class:`core.models.SearchTerm`): a column with few distinct values.
    KNOWN = "known"
    #: A substring, any case, through the column's trigram index.
    SUBSTRING = "substring"
    #: One of the source field's choices.
    CHOICE = "choice"
    #: An inclusive range: ``_from``/``_to`` for dates and times, ``_min``/``_max`` for numbers.
    RANGE = "range"


class Sort(enum.Enum):
    """How ``?ordering=<column>`` sorts by it (see :mod:`core.customers.ordering`)."""

    #: Every value is a customer's own: nothing follows it in the keys.
    UNIQUE = "unique"
    #: Few customers share a value: whatever follows it in an ordering sorts
    #: small groups, so it may lead an ordering of several fields.
    FEW_TIES = "few_ties"
    #: Many share a value, but few share it and the column an index holds
    #: after it (a first and a last name): the pair may lead an ordering.
    PAIRED = "paired"
    #: Many share a value (a city): it leads only the orders its index holds.
    TIES = "ties"


class Search(enum.Enum):
    """What a word of ``?search=`` matches in the column (see :mod:`core.customers.search`)."""

    #: Known values trigram-similar to the word (typos forgiven), closest first.
    NAME = "name"
    #: Known values clearly similar to the word: the word then means those places.
    PLACE = "place"
    #: The word itself, as the source field stores it.
    EXACT = "exact"
    #: A word with a digit, as a substring, through the column's trigram index.
    DIGITS = "digits"


@dataclass(frozen=True)
class Listed:
    """What a read-table column copies and how the list uses it."""

    #: The field of a table of record the column copies.
    source: models.Field
    filter: Filter | None = None
    sort: Sort | None = None
    search: Search | None = None
    #: The read-table column that sorts and bounds this one, where not itself
    #: (a NULL cannot take part in a keyset's row comparison: the birthday
    #: sorts by ``birthday_key``, which puts customers without one last).
    key: str | None = None


#: The read table's column class for each internal type of a source field.
PLAIN_FIELDS: dict[str, type[models.Field]] = {
    "AutoField": models.BigIntegerField,
    "BigAutoField": models.BigIntegerField,
    "BigIntegerField": models.BigIntegerField,
    "ForeignKey": models.BigIntegerField,
    "IntegerField": models.IntegerField,
    "CharField": models.CharField,
    "DateField": models.DateField,
    "DateTimeField": models.DateTimeField,
}


def listed(
    source: Any,
    *,
    filter: Filter | None = None,
    sort: Sort | None = None,
    search: Search | None = None,
    key: str | None = None,
) -> models.Field:
    """A read-table column copying ``source`` (``AppUser.first_name``, a field
    or its class attribute), used by the list as the keywords say.

    The column is a plain field of the source's type and length: no default,
    no ``auto_now``, no choices, no uniqueness (the table of record enforces
    those), nullable where the source is, and wherever the source's table is
    joined optionally (a one-to-one record a customer may not have).
    """
    field = getattr(source, "field", source)
    plain = PLAIN_FIELDS[field.get_internal_type()]
    options: dict[str, Any] = {}
    if field.primary_key and not field.is_relation:
        options["primary_key"] = True
    if isinstance(field, models.CharField):
        options["max_length"] = field.max_length
    if field.null or is_optional(field.model):
        options["null"] = True
    column = plain(**options)
    column.listed = Listed(field, filter, sort, search, key)
    return column


def is_optional(model: type[models.Model]) -> bool:
    """A table whose row hangs off another's by a one-to-one key: a customer
    may have none (the loyalty record)."""
    return any(f.one_to_one and f.concrete for f in model._meta.fields)


class JoinKind(enum.Enum):
    #: The customer: one read row per row.
    ROOT = "root"
    #: Many customers to one row (an address): joined by the customer's foreign key.
    MANY_TO_ONE = "many_to_one"
    #: At most one row per customer (the loyalty record): joined by its key to the customer.
    ONE_TO_ONE = "one_to_one"


@dataclass(frozen=True)
class Column:
    """A read-table column and its source."""

    name: str
    field: models.Field
    listed: Listed

    @property
    def source(self) -> models.Field:
        return self.listed.source

    @property
    def source_column(self) -> str:
        return self.listed.source.column

    @property
    def key(self) -> str:
        """The column that sorts and bounds it."""
        return self.listed.key or self.name

    @property
    def is_relation(self) -> bool:
        """A foreign key of the customer's (``address_id``): the join's, not shown."""
        return self.listed.source.is_relation


@dataclass(frozen=True)
class Join:
    """A table of record as the read table joins it, and the columns it gives."""

    model: type[models.Model]
    kind: JoinKind
    #: The nested object of the API's row it fills (None: the customer's own fields).
    group: str | None
    #: ROOT: the customer's primary key. MANY_TO_ONE: the customer's foreign key
    #: to this table. ONE_TO_ONE: this table's key to the customer.
    link: str
    columns: tuple[Column, ...]

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def pk(self) -> str:
        return self.model._meta.pk.column


@dataclass(frozen=True)
class ReadTable:
    """Everything the declaration of a read table says, derived once."""

    model: type[models.Model]
    columns: tuple[Column, ...]
    joins: tuple[Join, ...]

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def root(self) -> Join:
        return self.joins[0]

    def column(self, name: str) -> Column:
        """The column named ``name``, or whose key column it is (``birthday_key``)."""
        return next(column for column in self.columns if name in (column.name, column.key))

    def join_of(self, column: Column) -> Join:
        return next(join for join in self.joins if column in join.columns)

    def stored_columns(self) -> list[str]:
        """Every column a write fills (not those PostgreSQL generates), in declared order."""
        return [column.name for column in self.columns]

    def known_columns(self) -> list[Column]:
        """The columns whose distinct values :class:`core.models.SearchTerm` keeps."""
        return [
            c for c in self.columns if c.listed.filter is Filter.KNOWN or c.listed.search in NAMES
        ]

    def shown(self) -> list[Column]:
        """The columns of the API's row, in declared order: all but the join's keys."""
        return [column for column in self.columns if not column.is_relation]

    def btree_orders(self) -> list[tuple[str, ...]]:
        """The column orders the table's b-trees hold: its primary key, and each
        plain index of ``Meta.indexes`` (an expression or GIN index orders nothing)."""
        orders = [(self.model._meta.pk.column,)]
        for index in self.model._meta.indexes:
            if type(index) is models.Index and index.fields and not index.expressions:
                orders.append(tuple(index.fields))
        return orders


#: Searches that look a word up among a column's known values.
NAMES = (Search.NAME, Search.PLACE)


@functools.cache
def read_table(model: type[models.Model]) -> ReadTable:
    """The facts of ``model``'s declaration (its :func:`listed` columns)."""
    columns = tuple(
        Column(field.column, field, field.listed)
        for field in model._meta.concrete_fields
        if hasattr(field, "listed")
    )
    root = next(c.source.model for c in columns if c.field.primary_key)
    joins = [Join(root, JoinKind.ROOT, None, root._meta.pk.column, ())]
    for source in dict.fromkeys(c.source.model for c in columns if c.source.model is not root):
        joins.append(_join(root, source))
    joins = [
        Join(
            j.model, j.kind, j.group, j.link, tuple(c for c in columns if c.source.model is j.model)
        )
        for j in joins
    ]
    return ReadTable(model, columns, tuple(joins))


def _join(root: type[models.Model], model: type[models.Model]) -> Join:
    """How ``model`` joins the customer (``root``): by the customer's foreign
    key to it, or by its one-to-one key to the customer."""
    for field in root._meta.concrete_fields:
        if field.many_to_one and field.related_model is model:
            return Join(model, JoinKind.MANY_TO_ONE, field.name, field.column, ())
    for field in model._meta.concrete_fields:
        if field.one_to_one and field.related_model is root:
            return Join(model, JoinKind.ONE_TO_ONE, field.related_query_name(), field.column, ())
    raise ValueError(f"{model.__name__} is not joined to {root.__name__} by a key")


def columns_by(table: ReadTable, **wanted: Any) -> Iterator[Column]:
    """The columns whose :class:`Listed` has each attribute given (``filter=Filter.RANGE``)."""
    for column in table.columns:
        if all(getattr(column.listed, name) is value for name, value in wanted.items()):
            yield column
