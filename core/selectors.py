"""Reads of customers: the one place that builds the customer list query.

The API, the admin, the export and the benchmark all call these functions, so
a filter, an ordering or a page means the same SQL everywhere.

Joins: the address is an inner join (every customer has one). The loyalty
record is a reverse one-to-one, which Django left-joins; ordered by one of its
columns, the list **inner**-joins it instead, because only then can
PostgreSQL walk the ``relationship_points_user`` index to serve
``ordering=-relationship__points``: through the LEFT OUTER JOIN the same page
costs a sort of the whole table (2.5 s at 3M rows in the original). A
customer without a record (``generate_data``, the API and the admin always
create both) has no place in such an order and is left out of it.

Pages are fetched by **keyset**: the page after a row is "the rows whose sort
key compares greater than that row's", written as a SQL row comparison on
exactly the columns of a ``(sort column, tie-breaker)`` index, so page 50,000
costs what page 1 costs. See :func:`keyset_page`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.postgres.search import TrigramSimilarity
from django.db import connections
from django.db.models import (
    BooleanField,
    CharField,
    Expression,
    F,
    FloatField,
    Func,
    OrderBy,
    Q,
    QuerySet,
    Value,
)
from django.db.models.expressions import Col
from django.db.models.functions import Cast, Coalesce, Concat, Greatest, Upper

from crm.replicas import read_alias

from .filters import CustomerFilter
from .models import NO_BIRTHDAY, AppUser


class IsoTimestamp(Func):
    """A timestamp as ISO 8601 text, formatted by PostgreSQL.

    Parsing a ``timestamptz`` into a Python datetime (psycopg) and formatting
    it back for JSON (DRF's encoder) costs about 8 µs per value in Python: a
    third of a 50-row page's time. ``to_json()`` formats it in C on the
    server, and the text passes through untouched.
    """

    template = "(to_json(%(expressions)s) #>> '{}')"
    output_field = CharField()


#: What a list row holds, in this order (see :func:`customer_rows`).
CUSTOMER_COLUMNS: dict[str, Any] = {
    "id": F("id"),
    "first_name": F("first_name"),
    "last_name": F("last_name"),
    "gender": F("gender"),
    "customer_id": F("customer_id"),
    "phone_number": F("phone_number"),
    "birthday": F("birthday"),
    "created": IsoTimestamp("created"),
    "last_updated": IsoTimestamp("last_updated"),
    "address__street": F("address__street"),
    "address__street_number": F("address__street_number"),
    "address__city_code": F("address__city_code"),
    "address__city": F("address__city"),
    "address__country": F("address__country"),
    "relationship__points": F("relationship__points"),
    "relationship__created": IsoTimestamp("relationship__created"),
    "relationship__last_activity": IsoTimestamp("relationship__last_activity"),
}


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
    one index); ``tie_breaker`` is the key appended after it so that equal
    values still have a total order; ``kind`` is how a key value travels in a
    cursor.
    """

    expression: Expression
    table: str
    kind: str
    unique: bool = False


CUSTOMER = "customer"
ADDRESS = "address"
RELATIONSHIP = "relationship"

#: The ordering whitelist: public name -> how to sort by it. Each has an index
#: (see core.models) that serves both the sort and the keyset seek.
SORT_FIELDS: dict[str, SortField] = {
    "id": SortField(F("id"), CUSTOMER, "int", unique=True),
    "first_name": SortField(F("first_name"), CUSTOMER, "str"),
    "last_name": SortField(F("last_name"), CUSTOMER, "str"),
    "customer_id": SortField(F("customer_id"), CUSTOMER, "str", unique=True),
    "birthday": SortField(Coalesce("birthday", Value(NO_BIRTHDAY)), CUSTOMER, "date"),
    "created": SortField(F("created"), CUSTOMER, "datetime"),
    "last_updated": SortField(F("last_updated"), CUSTOMER, "datetime"),
    "address__city": SortField(F("address__city"), ADDRESS, "str"),
    "address__country": SortField(F("address__country"), ADDRESS, "str"),
    "relationship__points": SortField(F("relationship__points"), RELATIONSHIP, "int"),
    "relationship__last_activity": SortField(
        F("relationship__last_activity"), RELATIONSHIP, "datetime"
    ),
}

#: The ranking of ?search= (see customer_search); not requestable by name.
SEARCH_RANK = "search_rank"
RANK_FIELD = SortField(F(SEARCH_RANK), CUSTOMER, "float")

#: Tie-breakers per table: the table's own key, so that the keyset's leading
#: columns stay within one index.
TIE_BREAKERS: dict[str, list[tuple[Expression, str]]] = {
    CUSTOMER: [(F("id"), CUSTOMER)],
    ADDRESS: [(TableColumn("address", "city", "id"), ADDRESS), (F("id"), CUSTOMER)],
    RELATIONSHIP: [(TableColumn("relationship", "points", "appuser"), RELATIONSHIP)],
}

DEFAULT_ORDERING = ("id",)

#: Below this OFFSET a plain query is as fast as a deferred join (see
#: offset_page) and one query cheaper to build.
DEFERRED_JOIN_OFFSET = 1000


class InvalidOrdering(ValueError):
    """An ordering names a field that is not sortable, or names one twice."""


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

    def order_by(self, reverse: bool = False) -> list[OrderBy]:
        return [OrderBy(key.expression, descending=key.descending != reverse) for key in self.keys]


def customer_ordering(spec: str | Sequence[str] | None, *, searching: bool = False) -> Ordering:
    """Parse ``"last_name,-created"`` into an :class:`Ordering`.

    A unique tie-breaker always ends the keyset, in the direction of the last
    requested field, so that pages never overlap or skip rows.
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
    last = sortable[fields[-1].removeprefix("-")]
    if not last.unique:
        tables = {key.table for key in keys}
        tie_table = keys[-1].table if len(tables) == 1 else CUSTOMER
        for expression, table in TIE_BREAKERS[tie_table]:
            keys.append(SortKey(expression, keys[-1].descending, table, "int"))
    return Ordering(tuple(fields), tuple(keys))


def customer_list(
    *,
    filters: Mapping[str, Any] | None = None,
    ordering: Ordering | None = None,
    search: str | None = None,
) -> QuerySet:
    """Customers matching ``filters`` (already validated by :class:`CustomerFilter`)
    that have a place in ``ordering``.

    Not yet ordered or paged: see :func:`keyset_page`, :func:`offset_page`
    and :func:`customer_count`.
    """
    queryset = AppUser.objects.all()
    if ordering is not None and any(key.table == RELATIONSHIP for key in ordering.keys):
        # Makes Django inner-join the loyalty record (see the module docstring).
        queryset = queryset.filter(relationship__isnull=False)
    for name, value in (filters or {}).items():
        # What FilterSet.filter_queryset does, without instantiating a
        # FilterSet (it deep-copies every filter: a millisecond per request).
        queryset = CustomerFilter.base_filters[name].filter(queryset, value)
    if search:
        queryset = customer_search(queryset, search)
    return queryset


def customer_detail(pk: int) -> dict[str, Any] | None:
    """One customer, exactly as the list shows them (the same query, one row)."""
    ordering = customer_ordering(None)
    rows = list(_annotated(customer_list(filters={"id": pk}), ordering)[:1])
    return customer_rows(rows)[0] if rows else None


def customer_for_update(pk: int) -> AppUser | None:
    """The customer with their address and record loaded, as the write services take them.

    Not locked: the services write in their own transaction, and a write
    request reads the primary (see crm.replicas).
    """
    return AppUser.objects.select_related("address", "relationship").filter(pk=pk).first()


#: Words of a search beyond this many are ignored.
MAX_SEARCH_WORDS = 4


def search_words(text: str) -> list[str]:
    return [word.upper() for word in text.split()][:MAX_SEARCH_WORDS]


def customer_search(queryset: QuerySet, text: str) -> QuerySet:
    """Customers matching every word of ``text``, typos allowed, ranked by similarity.

    A word that is clearly similar to a city's name (see CITY_SIMILARITY)
    keeps that city's customers; any other word must be trigram-similar to
    the first or last name (pg_trgm's ``%``, with
    ``pg_trgm.similarity_threshold`` at 0.25 on this project's sessions), be
    the customer number, or be part of the phone number. Similar names are
    looked up among the distinct names (SearchTerm, a millisecond), and the
    customers who bear them through the names' b-trees.

    Why cities are told apart first: a condition "name matches OR city
    matches" spans two tables, and PostgreSQL can then only test it row by
    row after joining 3M customers to 3M addresses (measured: 6.8 s). Split
    this way, every word is a bitmap OR of trigram and b-tree index scans on
    one table. The few city names come from the ``(city, id)`` index.

    The rank adds up each word's best similarity, plus the similarity of the
    whole text to the full name, so "jon smith" puts Jon Smithers and John
    Smith above Joan Smithson.
    """
    first, last = Upper("first_name"), Upper("last_name")
    rank: Any = TrigramSimilarity(
        Concat(first, Value(" "), last, output_field=CharField()), Value(text.upper())
    )
    for word in search_words(text):
        cities = similar_cities(word)
        if cities:
            queryset = queryset.filter(address__city__in=cities)
            rank = rank + TrigramSimilarity(Upper("address__city"), Value(word))
            continue
        names = similar_names(word)
        queryset = queryset.filter(
            Q(first_name__in=names["first_name"])
            | Q(last_name__in=names["last_name"])
            | Q(customer_id=word)
            | Q(phone_number__icontains=word)
        )
        rank = rank + Greatest(
            TrigramSimilarity(first, Value(word)), TrigramSimilarity(last, Value(word))
        )
    # pg_trgm's similarity() is a float4; a cursor carries the rank as a
    # double and PostgreSQL compares a float4 with it through numeric at six
    # digits, so the boundary row would come back on the next page. As a
    # double, the rank round-trips exactly.
    return queryset.alias(**{SEARCH_RANK: Cast(rank, FloatField())})


#: How similar a word must be to a city's name to be read as that city: well
#: above the names' 0.25, so that "mary" (0.25 to "Marseille") stays a name
#: while "viena" (0.63 to "Vienna") is the city.
CITY_SIMILARITY = 0.5


def similar_names(word: str) -> dict[str, list[str]]:
    """First and last names trigram-similar to ``word`` (see SearchTerm)."""
    names: dict[str, list[str]] = {"first_name": [], "last_name": []}
    with connections[read_alias()].cursor() as cursor:
        cursor.execute("SELECT field, value FROM core_searchterm WHERE upper(value) %% %s", [word])
        for field, value in cursor.fetchall():
            names[field].append(value)
    return names


def similar_cities(word: str) -> list[str]:
    """Names of cities trigram-similar to ``word`` (a loose scan of the city index)."""
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(
            f"SELECT value FROM ({DISTINCT_SQL.format(table='core_address', column='city')}) "
            "cities WHERE similarity(upper(value), %s) >= %s",
            [word, CITY_SIMILARITY],
        )
        return [row[0] for row in cursor.fetchall()]


#: Distinct values of an indexed column without reading every row: a
#: recursive query that jumps through the b-tree from one value to the next,
#: one index descent per distinct value (58 cities, 10 countries).
DISTINCT_SQL = """
    WITH RECURSIVE walk(value) AS (
        (SELECT {column} FROM {table} ORDER BY {column} LIMIT 1)
        UNION ALL
        SELECT (SELECT {column} FROM {table} WHERE {column} > walk.value
                ORDER BY {column} LIMIT 1)
        FROM walk WHERE walk.value IS NOT NULL
    )
    SELECT value FROM walk WHERE value IS NOT NULL
"""


def distinct_values(table: str, column: str) -> list[str]:
    """The distinct values of a column that leads a b-tree index (see DISTINCT_SQL)."""
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(DISTINCT_SQL.format(table=table, column=column))
        return [row[0] for row in cursor.fetchall()]


def _annotated(queryset: QuerySet, ordering: Ordering) -> QuerySet:
    """Select the page's columns plus each key value (a cursor is made of them)."""
    columns = {f"_{name}": expression for name, expression in CUSTOMER_COLUMNS.items()}
    keys = {f"_key{i}": key.expression for i, key in enumerate(ordering.keys)}
    return queryset.annotate(**columns, **keys).values_list(*columns, *keys)


def _after(ordering: Ordering, values: Sequence[Any], reverse: bool) -> Q | RowComparison:
    """Rows strictly after ``values`` in the ordering (before them if ``reverse``)."""
    keys = ordering.keys

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
    expressions = [key.expression for key in keys]
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
        term = Q(RowComparison([key.expression], operator(key), [values[i]]))
        for j in range(i):
            term &= Q(RowComparison([keys[j].expression], "=", [values[j]]))
        strict |= term
    return Q(seek) & strict


@dataclass(frozen=True)
class Page:
    rows: list[tuple]  # CUSTOMER_COLUMNS, then the key values
    has_next: bool
    has_previous: bool

    def key_values(self, row: tuple, ordering: Ordering) -> list[Any]:
        return list(row[len(CUSTOMER_COLUMNS) : len(CUSTOMER_COLUMNS) + len(ordering.keys)])


def keyset_page(
    queryset: QuerySet,
    ordering: Ordering,
    *,
    size: int,
    after: Sequence[Any] | None = None,
    before: Sequence[Any] | None = None,
) -> Page:
    """The ``size`` rows after ``after`` (or before ``before``), in ``ordering``.

    One query of ``size + 1`` rows: the extra row says whether another page
    follows. Going backwards reads the reversed order and flips the result.
    """
    reverse = before is not None
    boundary = before if reverse else after
    query = _annotated(queryset, ordering)
    if boundary is not None:
        query = query.filter(_after(ordering, boundary, reverse))
    rows = list(query.order_by(*ordering.order_by(reverse))[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if reverse:
        rows.reverse()
        return Page(rows, has_next=True, has_previous=more)
    return Page(rows, has_next=more, has_previous=after is not None)


def offset_page(queryset: QuerySet, ordering: Ordering, *, page: int, size: int) -> Page:
    """Page ``page`` (1-based) by OFFSET, for clients that number their pages.

    A "deferred join": the inner query finds the page's ids with the narrowest
    scan that can (an index-only scan for the plain orderings), skipping
    ``OFFSET`` rows without touching the customer, address and loyalty rows;
    only the page's rows are then joined and fetched. Deep pages still cost
    the skipped index entries: cursors do not.
    """
    offset = (page - 1) * size
    if offset < DEFERRED_JOIN_OFFSET:
        query = _annotated(queryset, ordering).order_by(*ordering.order_by())
    else:
        ids = queryset.order_by(*ordering.order_by()).values("pk")[offset : offset + size + 1]
        # The outer query reads only those ids (its filters, true for them
        # anyway, cost nothing more); it carries the queryset's annotations,
        # such as a search's rank, that the ordering may use.
        query = _annotated(queryset.filter(pk__in=ids), ordering).order_by(*ordering.order_by())
        offset = 0
    rows = list(query[offset : offset + size + 1])
    more = len(rows) > size
    return Page(rows[:size], has_next=more, has_previous=page > 1)


@dataclass(frozen=True)
class Count:
    value: int | None
    is_estimate: bool


def estimate_count(queryset: QuerySet) -> int:
    """The planner's estimate of how many rows ``queryset`` returns.

    ``EXPLAIN`` costs a planning pass (well under a millisecond) where an exact
    ``COUNT(*)`` over millions of rows costs hundreds of milliseconds. The
    estimate comes from the statistics ``ANALYZE`` gathers; for a combination
    of filters it assumes they are independent.
    """
    if not queryset.query.where:
        # Unfiltered: the planner's estimate would be the table's own, which
        # ANALYZE keeps in pg_class; reading it skips planning a query.
        with connections[read_alias()].cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                [queryset.model._meta.db_table],
            )
            estimate = cursor.fetchone()[0]
        if estimate >= 0:  # -1: never analyzed
            return estimate
    sql, params = queryset.values("pk").query.sql_with_params()
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def customer_count(
    queryset: QuerySet, mode: str, *, exact_threshold: int, known_total: int | None = None
) -> Count:
    """``exact``, ``none``, or ``estimated``: exact when the planner expects at
    most ``exact_threshold`` rows (counting them is then cheap), else its estimate.

    ``known_total`` is the count when the caller has already seen every
    matching row (a last page reached without a cursor): no query needed.
    """
    if mode == "none":
        return Count(None, False)
    if known_total is not None:
        return Count(known_total, False)
    if mode == "estimated":
        estimate = estimate_count(queryset)
        if estimate > exact_threshold:
            return Count(estimate, True)
    return Count(queryset.count(), False)


def customer_rows(rows: Iterable[tuple]) -> list[dict[str, Any]]:
    """List rows as the API's nested JSON objects.

    A DRF ``ModelSerializer`` costs about 100 µs per customer with its nested
    address and record; building the dicts directly costs about 2 µs, which
    keeps serialization far below the database time.
    """
    return [
        {
            "id": r[0],
            "first_name": r[1],
            "last_name": r[2],
            "gender": r[3],
            "customer_id": r[4],
            "phone_number": r[5],
            "birthday": r[6],
            "created": r[7],
            "last_updated": r[8],
            "address": {
                "street": r[9],
                "street_number": r[10],
                "city_code": r[11],
                "city": r[12],
                "country": r[13],
            },
            "relationship": (
                {"points": r[14], "created": r[15], "last_activity": r[16]}
                if r[15] is not None
                else None
            ),
        }
        for r in rows
    ]


def key_to_json(value: Any) -> Any:
    """A key value as it travels in a cursor."""
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def key_from_json(kind: str, value: Any) -> Any:
    """The inverse of :func:`key_to_json`; raises ValueError or TypeError on junk."""
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError("not an integer")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise TypeError("not a string")
        return value
    if kind == "float":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TypeError("not a number")
        return float(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "datetime":
        return dt.datetime.fromisoformat(value)
    raise ValueError(kind)


#: Export columns: the API's row, flattened for CSV (nested objects become
#: address_* and relationship_* columns).
EXPORT_COLUMNS: dict[str, Any] = {
    name.replace("__", "_"): expression for name, expression in CUSTOMER_COLUMNS.items()
}


def customer_export_sql(queryset: QuerySet, ordering: Ordering, fmt: str) -> tuple[str, list]:
    """The ``COPY … TO STDOUT`` statement that streams every row of ``queryset``.

    PostgreSQL renders the rows itself, CSV (with its quoting of commas,
    quotes and newlines) or one JSON object per line, and psycopg hands the
    bytes through: no Python object per row, constant memory.
    """
    names = {f"_x_{name}": expression for name, expression in EXPORT_COLUMNS.items()}
    query = queryset.annotate(**names).values_list(*names).order_by(*ordering.order_by())
    sql, params = query.query.sql_with_params()
    columns = ", ".join(
        f'"{alias}" AS "{name}"' for alias, name in zip(names, EXPORT_COLUMNS, strict=True)
    )
    if fmt == "csv":
        return (
            f"COPY (SELECT {columns} FROM ({sql}) rows) TO STDOUT WITH (FORMAT csv, HEADER)",
            params,
        )
    # One JSON object per line. CSV mode with a quote and a delimiter that JSON
    # text never contains raw (it escapes control characters) passes each
    # line through verbatim, where COPY's text format would escape backslashes.
    objects = ", ".join(
        f"'{name}', \"{alias}\"" for alias, name in zip(names, EXPORT_COLUMNS, strict=True)
    )
    return (
        f"COPY (SELECT json_build_object({objects}) FROM ({sql}) rows) TO STDOUT "
        "WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')",
        params,
    )
