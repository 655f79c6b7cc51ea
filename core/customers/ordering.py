"""Orderings of the customer list, and the keyset predicate that pages through them.

``?ordering=last_name,-created`` becomes an :class:`Ordering`: the requested
sort keys plus tie-breakers, so that every row has one place and pages never
overlap or skip rows. Every sortable field is a column of the read table
declared sortable (:class:`core.models.CustomerRow`) with a ``(field, …, id)``
b-tree in its ``Meta.indexes`` (:data:`INDEXED_ORDERS`); :func:`rows_after`
writes "the rows after this one" as a SQL row comparison on exactly those
columns, which PostgreSQL turns into an index seek, so page 50,000 costs
what page 1 costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import BooleanField, Expression, F, Func, OrderBy, Q, Value

from core.models import CustomerRow
from core.read_table import Column, Filter, ReadTable, Sort, read_table


class RowComparison(Expression):
    """``(a, b, c) > (x, y, z)``: PostgreSQL compares row values
    lexicographically and uses a b-tree on ``(a, b, c)`` to seek to the first
    match, which an equivalent ``a > x OR (a = x AND …)`` does not."""

    conditional = True
    output_field = BooleanField()

    def __init__(self, lhs: Sequence[Any], operator: str, rhs: Sequence[Any]) -> None:
        super().__init__()
        self.lhs, self.operator, self.rhs = list(lhs), operator, list(rhs)

    def get_source_expressions(self) -> list:
        return [*self.lhs, *self.rhs]

    def set_source_expressions(self, expressions: list) -> None:
        self.lhs, self.rhs = expressions[: len(self.lhs)], expressions[len(self.lhs) :]

    def resolve_expression(
        self, query=None, allow_joins=True, reuse=None, summarize=False, for_save=False
    ):
        args = (query, allow_joins, reuse, summarize, for_save)
        clone = self.copy()
        clone.lhs = [expression.resolve_expression(*args) for expression in self.lhs]
        clone.rhs = [
            (v if hasattr(v, "resolve_expression") else Value(v)).resolve_expression(*args)
            for v in self.rhs
        ]
        return clone

    def as_sql(self, compiler, connection):
        sides, params = [], []
        for side in (self.lhs, self.rhs):
            parts = []
            for expression in side:
                sql, p = compiler.compile(expression)
                parts.append(sql)
                params.extend(p)
            sides.append(", ".join(parts))
        return f"({sides[0]}) {self.operator} ({sides[1]})", params


@dataclass(frozen=True)
class SortField:
    """A field the list can be ordered by: its expression on the read table,
    how a key value travels in a cursor (``kind``), whether its values are
    unique, and whether they have few ties (so that sorting the ties of a
    walk of its index by other fields costs little)."""

    expression: Expression
    kind: str
    unique: bool = False
    few_ties: bool = False


#: How a key value of each column type travels in a cursor.
KINDS: tuple[tuple[type[models.Field], str], ...] = (
    (models.DateTimeField, "datetime"),
    (models.DateField, "date"),
    (models.IntegerField, "int"),
    (models.CharField, "str"),
)


def sort_fields(table: ReadTable) -> dict[str, SortField]:
    """The ordering whitelist, from the read table's declaration: each column
    declared sortable, by its public name (``address__city``), sorted by its
    key column (the birthday by ``birthday_key``)."""
    fields = {}
    for column in table.columns:
        if column.listed.sort is None:
            continue
        key = CustomerRow._meta.get_field(column.key)
        key = getattr(key, "output_field", None) or key  # a generated column's type
        kind = next(kind for field_type, kind in KINDS if isinstance(key, field_type))
        sort = column.listed.sort
        fields[public_name(table, column)] = SortField(
            F(column.key),
            kind,
            unique=sort is Sort.UNIQUE,
            few_ties=sort in (Sort.UNIQUE, Sort.FEW_TIES),
        )
    return fields


def public_name(table: ReadTable, column: Column) -> str:
    """A column's name in the API: the source's, under its nested object (``address__city``)."""
    group = table.join_of(column).group
    return f"{group}__{column.source.name}" if group else column.source.name


def indexed_orders(table: ReadTable) -> tuple[tuple[str, ...], ...]:
    """The orders the read table's b-trees hold (its primary key and
    ``Meta.indexes``), in sortable fields' names; a b-tree over a column
    nobody sorts by (``city_code``) orders nothing the list asks for."""
    names = {
        column.key: public_name(table, column) for column in table.columns if column.listed.sort
    }
    return tuple(
        tuple(names[c] for c in order)
        for order in table.btree_orders()
        if all(c in names for c in order)
    )


def few_ties_pairs(table: ReadTable) -> set[tuple[str, str]]:
    """Pairs of fields that lead a b-tree and leave few ties together (a
    first and a last name: full names are nearly unique)."""
    paired = {public_name(table, c) for c in table.columns if c.listed.sort is Sort.PAIRED}
    return {
        order[:2] for order in indexed_orders(table) if set(order[:2]) <= paired and len(order) > 1
    }


TABLE = read_table(CustomerRow)

#: The ordering whitelist: public name -> how to sort by it.
SORT_FIELDS: dict[str, SortField] = sort_fields(TABLE)

#: The orders the read table's b-trees hold, as sortable fields: a walk of
#: one, forwards or backwards, yields any ordering that is a prefix of it in
#: one direction.
INDEXED_ORDERS: tuple[tuple[str, ...], ...] = indexed_orders(TABLE)

#: Filter columns one b-tree of the read table holds together, first and
#: second, each compared with the known values a text matched: both
#: conditions are read through it at once (``country = 'United States' AND
#: city IN (…)`` finds the 0 customers of both in the (country, city, id)
#: index, where either alone reads tens of thousands).
READ_TOGETHER: tuple[tuple[str, str], ...] = tuple(
    (order[0], order[1])
    for order in TABLE.btree_orders()
    if len(order) > 1
    and {order[0], order[1]} <= {c.name for c in TABLE.columns if c.listed.filter is Filter.KNOWN}
)

#: The ranking of ?search= (see core.customers.search); not requestable by name.
SEARCH_RANK = "search_rank"
RANK_FIELD = SortField(F(SEARCH_RANK), "float", few_ties=True)

DEFAULT_ORDERING = ("id",)


class InvalidOrdering(ValueError):
    """An ordering names a field that is not sortable, names one twice, or
    combines fields that no index serves together (see :func:`indexed_order`)."""


#: What a 400 for an ordering of several fields says is allowed.
SEVERAL_FIELDS_RULE = (
    "Allowed orderings of several fields: a first field with few ties ("
    + ", ".join(name for name, field in SORT_FIELDS.items() if field.few_ties)
    + "), or last_name,first_name or first_name,last_name (both ascending or both "
    "descending), followed by any fields; or the start of one of "
    + "; ".join(",".join(order) for order in INDEXED_ORDERS if len(order) > 1)
    + ", all ascending or all descending."
)


@dataclass(frozen=True)
class SortKey:
    name: str
    expression: Expression
    descending: bool
    kind: str

    @property
    def column(self) -> str:
        """The read-table column it sorts by (``search_rank`` is no column)."""
        return self.expression.name


@dataclass(frozen=True)
class Ordering:
    """A validated ordering: the requested fields and the full keyset.

    ``indexed``: a walk of one of the read table's b-trees yields the keys in
    order (or at least their first, for a first field with few ties);
    PostgreSQL sorts the rest within the ties (an incremental sort).
    """

    fields: tuple[str, ...]  # e.g. ("-relationship__points",)
    keys: tuple[SortKey, ...]  # the requested keys plus the tie-breakers
    indexed: bool = True

    @property
    def spec(self) -> str:
        return ",".join(self.fields)

    @property
    def by_record(self) -> bool:
        """Does it name a loyalty-record field? Such an order has no place for a
        customer without a record (even where the field orders nothing, after
        a unique one: ``id,relationship__points``)."""
        return any(field.removeprefix("-").startswith("relationship__") for field in self.fields)

    def order_by(self, reverse: bool = False, *, unindexed: bool = False) -> list[OrderBy]:
        """ORDER BY the keys; ``unindexed``: by expressions no index matches (see
        :class:`Unindexed`), so that PostgreSQL fetches the matches, then sorts."""
        return [
            OrderBy(
                Unindexed(key.expression, key.kind) if unindexed else key.expression,
                descending=key.descending != reverse,
            )
            for key in self.keys
        ]


class Unindexed(Func):
    """A sort key's value, written so that no index matches it: ``points + 0``.

    The same order, but PostgreSQL can no longer produce it by walking the
    key's index; it must find the matching rows through the filters' indexes
    and sort them. That is what a *sort* plan wants (see
    :mod:`core.customers.plans`). A ``MATERIALIZED`` CTE would fence the
    same way, but the ORM cannot write one.
    """

    NO_OPS = {
        "int": "(%(expressions)s + 0)",
        "float": "(%(expressions)s + 0)",
        "date": "(%(expressions)s + 0)",
        "datetime": "(%(expressions)s + interval '0 seconds')",
        "str": "(%(expressions)s || '')",
    }

    def __init__(self, expression: Expression, kind: str) -> None:
        super().__init__(expression, template=self.NO_OPS[kind])


#: Index orders whose first two fields leave few ties: whatever sorts their
#: ties costs little.
FEW_TIES_PAIRS = few_ties_pairs(TABLE)


def indexed_order(fields: Sequence[tuple[str, bool]]) -> tuple[str, ...] | None:
    """The order of the keys that serves ``fields`` (name, descending), if any.

    One does when the fields are the start of an index's order, in one
    direction (``last_name,first_name``: the last name's b-tree); or when
    they start with a field, or a pair of fields, that leaves few ties
    (``created,-last_name``: a walk of the sign-up index, each group of
    customers who signed up in the same microsecond sorted by last name;
    ``last_name,first_name,-created``). A page ordered by
    ``address__city,-id`` would walk the city index and sort up to 340,000
    Londoners by id on every page: refused (see :func:`customer_ordering`)
    rather than served slowly.
    """
    names = [name for name, _ in fields]
    directions = [descending for _, descending in fields]
    for order in INDEXED_ORDERS:
        if len(set(directions)) == 1 and tuple(names) == order[: len(names)]:
            return order
    pair = tuple(names[:2]) in FEW_TIES_PAIRS and directions[0] == directions[1]
    if SORT_FIELDS[names[0]].few_ties or pair:
        # The last field's ties are ordered as its own index orders them.
        tail = next(order for order in INDEXED_ORDERS if order[0] == names[-1])
        return (*names, *(name for name in tail[1:] if name not in names))
    return None


def customer_ordering(spec: str | Sequence[str] | None, *, searching: bool = False) -> Ordering:
    """Parse ``"created,-last_name"`` into an :class:`Ordering`.

    The keys are the requested fields, completed by the index order that
    serves them (``last_name`` is ``last_name, first_name, id``), the last
    one the unique id in the direction of the last requested field, so that
    pages never overlap or skip rows. Fields after a unique one order
    nothing and are dropped (``-id,first_name`` is ``-id``).
    """
    sortable = {**SORT_FIELDS, SEARCH_RANK: RANK_FIELD} if searching else SORT_FIELDS
    if spec is None or spec == "":
        fields = [f"-{SEARCH_RANK}"] if searching else list(DEFAULT_ORDERING)
    elif isinstance(spec, str):
        fields = [part.strip() for part in spec.split(",")]
    else:
        fields = list(spec)
    seen: set[str] = set()
    requested: list[tuple[str, bool]] = []
    for raw in fields:
        name = raw.removeprefix("-")
        if sortable.get(name) is None or not name:
            raise InvalidOrdering(
                f"{raw!r} is not a sortable field; use one of: {', '.join(SORT_FIELDS)} "
                "(prefix '-' for descending, separate several with commas)"
            )
        if name in seen:
            raise InvalidOrdering(f"{name!r} appears more than once")
        seen.add(name)
        requested.append((name, raw.startswith("-")))
    unique = next((i for i, (name, _) in enumerate(requested) if sortable[name].unique), None)
    if unique is not None:
        requested = requested[: unique + 1]
    if requested[0][0] == SEARCH_RANK:
        # The rank is computed per customer: no index holds it; a sort.
        order, indexed = (*(name for name, _ in requested), "id"), False
    else:
        order = indexed_order(requested)
        indexed = True
    if order is None:
        spec_text = ",".join(("-" if d else "") + n for n, d in requested)
        raise InvalidOrdering(
            f"{spec_text!r} cannot be served fast: customers sharing a value of "
            f"{requested[0][0]} (up to hundreds of thousands) would have to be sorted by "
            f"{', '.join(name for name, _ in requested[1:])} on every page. {SEVERAL_FIELDS_RULE}"
        )
    keys = [
        SortKey(name, sortable[name].expression, descending, sortable[name].kind)
        for name, descending in requested
    ]
    for name in order[len(keys) :]:
        if name not in seen:
            field = sortable[name]
            keys.append(SortKey(name, field.expression, keys[-1].descending, field.kind))
    return Ordering(tuple(fields), tuple(keys), indexed)


def rows_after(
    ordering: Ordering,
    values: Sequence[Any],
    reverse: bool,
    *,
    unindexed: bool = False,
    spelled_out: bool = False,
) -> Q | RowComparison:
    """Rows strictly after ``values`` in the ordering (before them if ``reverse``).

    Written as a seek on the ordering's index, unless ``unindexed``: a plan that
    sorts the matches (see :class:`Unindexed`) must not be handed a range of
    the ordering's index to scan instead of its filters' indexes. And as one
    row comparison where the keys go one way, unless ``spelled_out``: each
    key compared on its own, so that PostgreSQL folds a key that is a
    constant (a band's rank, see
    :func:`core.customers.page_statement.banded_matches`) and skips what it
    rules out; a row comparison it evaluates on each row.
    """
    keys = ordering.keys
    expressions = [
        Unindexed(key.expression, key.kind) if unindexed else key.expression for key in keys
    ]

    def operator(key: SortKey, inclusive: bool = False) -> str:
        greater = key.descending == reverse
        return (">" if greater else "<") + ("=" if inclusive else "")

    strict = Q()
    for i, key in enumerate(keys):
        term = Q(RowComparison([expressions[i]], operator(key), [values[i]]))
        for j in range(i):
            term &= Q(RowComparison([expressions[j]], "=", [values[j]]))
        strict |= term
    if spelled_out:
        return strict
    if all(key.descending == keys[0].descending for key in keys):
        return RowComparison(expressions, operator(keys[0]), values)
    # Mixed directions (a first field with few ties, then others): no single
    # row comparison exists; seek on the first key, and spell out the
    # lexicographic order.
    seek = RowComparison(expressions[:1], operator(keys[0], inclusive=True), values[:1])
    return Q(seek) & strict
