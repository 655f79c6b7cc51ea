"""Orderings of the customer list, and the keyset predicate that pages through them.

``?ordering=last_name,-created`` becomes an :class:`Ordering`: the requested
sort keys plus a tie-breaker, so that every row has one place and pages never
overlap or skip rows. Each sortable column has a ``(column, tie-breaker)``
b-tree (see :mod:`core.models`); :func:`rows_after` writes "the rows after this
one" as a SQL row comparison on exactly those columns, which PostgreSQL turns
into an index seek, so page 50,000 costs what page 1 costs.

Joins: ordered by a loyalty-record column, the list **inner**-joins the record
(see :func:`core.customers.selectors.customer_list`), because only then can
PostgreSQL walk ``relationship_points_user`` to serve
``ordering=-relationship__points``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import BooleanField, Expression, F, Func, OrderBy, Q, Value
from django.db.models.expressions import Col
from django.db.models.functions import Coalesce

from core.models import NO_BIRTHDAY


class TableColumn(Expression):
    """A column of a joined table, as that table's column.

    Django rewrites ``F("address__id")`` to the customer's own
    ``address_id`` (it saves a join). For a keyset seek that is wrong: the row
    comparison ``(city, id) > (…)`` is only an index condition on
    ``address_city_id`` when both columns belong to the address table.
    """

    def __init__(self, relation: str, probe: str, column: str) -> None:
        super().__init__()
        self.relation, self.probe, self.column = relation, probe, column

    def resolve_expression(
        self, query=None, allow_joins=True, reuse=None, summarize=False, for_save=False
    ):
        # Resolving a non-key column of the relation sets the join up and
        # tells us its alias; then point at the column we want on that alias.
        probe = F(f"{self.relation}__{self.probe}").resolve_expression(
            query, allow_joins, reuse, summarize, for_save
        )
        field = probe.target.model._meta.get_field(self.column)
        return Col(probe.alias, field, field)


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
    """A column the list can be ordered by.

    ``table`` groups keys whose columns live in one table (and so can share
    one index); ``kind`` is how a key value travels in a cursor. ``few_ties``:
    its values are (nearly) unique, so whatever sorts its ties costs little.
    ``then`` names the field its index sorts next, before the tie-breaking
    id (``last_name`` is indexed as ``(last_name, first_name, id)``): the
    field's own ties are ordered by it, and ``field,then`` is an ordering the
    index serves; ``then_few_ties`` says whether that pair leaves few ties.
    """

    expression: Expression
    table: str
    kind: str
    unique: bool = False
    few_ties: bool = False
    then: str | None = None
    then_few_ties: bool = False


CUSTOMER = "customer"
ADDRESS = "address"
RELATIONSHIP = "relationship"

#: The ordering whitelist: public name -> how to sort by it. Each has an index
#: (see core.models) that serves both the sort and the keyset seek.
SORT_FIELDS: dict[str, SortField] = {
    "id": SortField(F("id"), CUSTOMER, "int", unique=True, few_ties=True),
    "first_name": SortField(F("first_name"), CUSTOMER, "str", then="last_name", then_few_ties=True),
    "last_name": SortField(F("last_name"), CUSTOMER, "str", then="first_name", then_few_ties=True),
    "customer_id": SortField(F("customer_id"), CUSTOMER, "str", unique=True, few_ties=True),
    "birthday": SortField(
        Coalesce("birthday", Value(NO_BIRTHDAY)), CUSTOMER, "date", few_ties=True
    ),
    "created": SortField(F("created"), CUSTOMER, "datetime", few_ties=True),
    "last_updated": SortField(F("last_updated"), CUSTOMER, "datetime", few_ties=True),
    "address__city": SortField(F("address__city"), ADDRESS, "str"),
    "address__country": SortField(F("address__country"), ADDRESS, "str", then="address__city"),
    "relationship__points": SortField(F("relationship__points"), RELATIONSHIP, "int"),
    "relationship__last_activity": SortField(
        F("relationship__last_activity"), RELATIONSHIP, "datetime", few_ties=True
    ),
}

#: The ranking of ?search= (see customer_search); not requestable by name.
SEARCH_RANK = "search_rank"
RANK_FIELD = SortField(F(SEARCH_RANK), CUSTOMER, "float", few_ties=True)

#: Tie-breakers per table: the table's own key, so that the keyset's leading
#: columns stay within one index.
TIE_BREAKERS: dict[str, list[tuple[Expression, str]]] = {
    CUSTOMER: [(F("id"), CUSTOMER)],
    ADDRESS: [(TableColumn("address", "city", "id"), ADDRESS), (F("id"), CUSTOMER)],
    RELATIONSHIP: [(TableColumn("relationship", "points", "appuser"), RELATIONSHIP)],
}

DEFAULT_ORDERING = ("id",)


class InvalidOrdering(ValueError):
    """An ordering names a field that is not sortable, names one twice, or
    combines fields that no index serves together (see :func:`check_servable`)."""


#: What a 400 for an ordering of several fields says is allowed.
SEVERAL_FIELDS_RULE = (
    "Allowed orderings of several fields: a first field with few ties ("
    + ", ".join(name for name, field in SORT_FIELDS.items() if field.few_ties)
    + ") followed by any fields; "
    + "; ".join(
        f"{name},{field.then}" + (" followed by any fields" if field.then_few_ties else " alone")
        for name, field in SORT_FIELDS.items()
        if field.then
    )
    + " (those pairs both ascending or both descending)."
)


def check_servable(fields: Sequence[tuple[str, bool]], sortable: dict[str, SortField]) -> None:
    """Refuse an ordering of several fields that no index serves.

    A page ordered by ``a,b`` walks ``a``'s index and sorts each group of
    customers sharing a value of ``a`` by ``b``. Where ``a`` has few ties
    (a timestamp, a unique number) the groups are a row or two; where it has
    many (11% of customers live in London, one in a hundred is called
    Smith), every page would sort a group of up to a million rows, joined
    from another table. Those are refused, with what is allowed, rather than
    served slowly; ``last_name,first_name`` and ``address__country,
    address__city`` have indexes of their own.
    """
    if len(fields) < 2:
        return
    (first, descending), (second, second_descending) = fields[0], fields[1]
    field = sortable[first]
    if field.few_ties:
        return
    pair = field.then == second and descending == second_descending
    if pair and (len(fields) == 2 or field.then_few_ties):
        return
    spec = ",".join(("-" if d else "") + name for name, d in fields)
    grouped, rest = (f"{first},{second}", fields[2:]) if pair else (first, fields[1:])
    raise InvalidOrdering(
        f"{spec!r} cannot be served fast: customers sharing a value of {grouped} "
        f"(up to hundreds of thousands) would have to be sorted by "
        f"{', '.join(name for name, _ in rest)} on every page. {SEVERAL_FIELDS_RULE}"
    )


@dataclass(frozen=True)
class SortKey:
    expression: Expression
    descending: bool
    table: str
    kind: str


@dataclass(frozen=True)
class Ordering:
    """A validated ordering: the requested fields and the full keyset."""

    fields: tuple[str, ...]  # e.g. ("-relationship__points",)
    keys: tuple[SortKey, ...]  # the requested keys plus the tie-breakers

    @property
    def spec(self) -> str:
        return ",".join(self.fields)

    def on_records(self) -> Ordering | None:
        """The same order as columns of the loyalty records alone (the customer's
        id is the record's ``appuser_id``), or None where a key is another
        table's: what a query of the records themselves sorts by (see
        :attr:`core.customers.selectors.CustomerList.records`)."""
        keys = []
        for key in self.keys:
            if key.table == RELATIONSHIP and isinstance(key.expression, TableColumn):
                column = F(key.expression.column)  # the tie-breaker: appuser_id
            elif key.table == RELATIONSHIP:
                column = F(key.expression.name.removeprefix("relationship__"))
            elif key.expression == F("id"):
                column = F("appuser")
            else:
                return None
            keys.append(SortKey(column, key.descending, RELATIONSHIP, key.kind))
        return Ordering(self.fields, tuple(keys))

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
    and sort them. That is what :class:`core.customers.selectors.ListPlan`
    wants when few customers match. (A ``MATERIALIZED`` CTE would fence the
    same way, but the ORM cannot write one.)
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


def customer_ordering(spec: str | Sequence[str] | None, *, searching: bool = False) -> Ordering:
    """Parse ``"created,-last_name"`` into an :class:`Ordering`.

    A unique tie-breaker always ends the keyset, in the direction of the last
    requested field, so that pages never overlap or skip rows; a field whose
    index sorts another field next (``last_name``, then ``first_name``) has
    its ties ordered by that field first. Several fields must be servable by
    an index (:func:`check_servable`).
    """
    sortable = {**SORT_FIELDS, SEARCH_RANK: RANK_FIELD} if searching else SORT_FIELDS
    if spec is None or spec == "":
        fields = [f"-{SEARCH_RANK}"] if searching else list(DEFAULT_ORDERING)
    elif isinstance(spec, str):
        fields = [part.strip() for part in spec.split(",")]
    else:
        fields = list(spec)
    seen: set[str] = set()
    keys: list[SortKey] = []
    for raw in fields:
        name = raw.removeprefix("-")
        field = sortable.get(name)
        if field is None or not name:
            raise InvalidOrdering(
                f"{raw!r} is not a sortable field; use one of: {', '.join(SORT_FIELDS)} "
                "(prefix '-' for descending, separate several with commas)"
            )
        if name in seen:
            raise InvalidOrdering(f"{name!r} appears more than once")
        seen.add(name)
        keys.append(SortKey(field.expression, raw.startswith("-"), field.table, field.kind))
    check_servable([(raw.removeprefix("-"), raw.startswith("-")) for raw in fields], sortable)
    unique = next(
        (i for i, raw in enumerate(fields) if sortable[raw.removeprefix("-")].unique), None
    )
    if unique is not None:
        # A unique field leaves no ties: the fields after it order nothing, and
        # sorting by them would only read them (``-id,first_name`` is ``-id``).
        keys = keys[: unique + 1]
    last = sortable[fields[len(keys) - 1].removeprefix("-")]
    if last.then and last.then not in seen:
        # The field its index sorts next orders its ties (see SortField).
        then = sortable[last.then]
        keys.append(SortKey(then.expression, keys[-1].descending, then.table, then.kind))
    if not last.unique:
        tables = {key.table for key in keys}
        tie_table = keys[-1].table if len(tables) == 1 else CUSTOMER
        for expression, table in TIE_BREAKERS[tie_table]:
            keys.append(SortKey(expression, keys[-1].descending, table, "int"))
    return Ordering(tuple(fields), tuple(keys))


def rows_after(
    ordering: Ordering, values: Sequence[Any], reverse: bool, *, unindexed: bool = False
) -> Q | RowComparison:
    """Rows strictly after ``values`` in the ordering (before them if ``reverse``).

    Written as a seek on the ordering's index, unless ``unindexed``: a plan that
    sorts the matches (see :class:`Unindexed`) must not be handed a range of
    the ordering's index to scan instead of its filters' indexes.
    """
    keys = ordering.keys
    expressions = [
        Unindexed(key.expression, key.kind) if unindexed else key.expression for key in keys
    ]

    def operator(key: SortKey, inclusive: bool = False) -> str:
        greater = key.descending == reverse
        return (">" if greater else "<") + ("=" if inclusive else "")

    # The longest leading run of keys in one table and one direction: an index
    # on those columns can seek straight to the boundary.
    run = 1
    while (
        run < len(keys)
        and keys[run].table == keys[0].table
        and keys[run].descending == keys[0].descending
    ):
        run += 1
    if run == len(keys):
        return RowComparison(expressions, operator(keys[0]), values)
    seek = RowComparison(expressions[:run], operator(keys[0], inclusive=True), values[:run])
    if all(key.descending == keys[0].descending for key in keys):
        strict = RowComparison(expressions, operator(keys[0]), values)
        return Q(seek) & Q(strict)
    # Mixed directions: no single row comparison exists; spell out the
    # lexicographic order, and keep the seek on the leading run.
    strict = Q()
    for i, key in enumerate(keys):
        term = Q(RowComparison([expressions[i]], operator(key), [values[i]]))
        for j in range(i):
            term &= Q(RowComparison([expressions[j]], "=", [values[j]]))
        strict |= term
    return Q(seek) & strict
