"""The page statement: one SQL statement per page, its ids by the plan chosen,
then their rows and the count.

Written from a :class:`core.customers.plans.Plan` (the walk of the ordering's
index, the sort of the matches, or a bounded walk that falls back to the
sort: :func:`plan_statement`), by the ORM once per shape of request, and kept
(:data:`PAGE_STATEMENTS`, see :mod:`core.customers.statements`).
:mod:`core.customers.pagination` runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import (
    BigIntegerField,
    BooleanField,
    Expression,
    ExpressionWrapper,
    F,
    FloatField,
    Func,
    IntegerField,
    Q,
    QuerySet,
    Value,
    Window,
)
from django.db.models import Count as RowCount
from django.db.models.constants import LOOKUP_SEP
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from django.db.models.sql.datastructures import BaseTable

from core.models import CustomerRow

from .columns import row_expressions
from .ordering import SEARCH_RANK, Ordering, rows_after
from .plans import BOUNDED, EXACT, Plan
from .statements import (
    SENTINELS,
    CompiledStatement,
    Param,
    StatementCache,
    compile_statement,
    compiling_shape,
    param_values,
    shape_of,
)
from .tunables import STATEMENT_CACHE_SIZE

#: The page statement: the plan finds the page's ids (and the count, where
#: a sort counts its matches as it reads them); only those rows are then read
#: in full and formatted (to_json of every timestamp: done below a sort of
#: 581,276 matches, it took 500 ms of an 800 ms scan).
PAGE = """
WITH page AS MATERIALIZED ({plan})
{rows}
"""

#: The plan when a walk may come up short: the walk reads at most its budget
#: of index entries (see walk_statement); if it found too few matches
#: although the index went on, the matches are sorted instead.
WALK_OR_SORT = """
WITH walk AS MATERIALIZED ({walk}),
fallback AS MATERIALIZED (
    SELECT (SELECT count(*) FROM walk) < %s AND EXISTS ({beyond}) AS needed
)
SELECT id, NULL::bigint AS _total FROM walk WHERE NOT (SELECT needed FROM fallback)
UNION ALL
SELECT * FROM ({sort}) sorted WHERE (SELECT needed FROM fallback)
"""


#: The ``_total`` of a plan that does not count.
NO_TOTAL = Cast(Value(None), BigIntegerField())

#: The compiled page statements of this process (see
#: :data:`core.customers.tunables.STATEMENT_CACHE_SIZE`).
PAGE_STATEMENTS = StatementCache(STATEMENT_CACHE_SIZE)


def page_statement(plan: Plan) -> tuple[str, list]:
    """The one statement that reads a page and its count (:data:`PAGE`),
    compiled once per shape (:data:`PAGE_STATEMENTS`) and given this
    request's values."""
    position = plan.position
    trees = (plan.access, plan.tests, plan.start, plan.rank, plan.bands, plan.others)
    values = {
        **param_values(*trees),
        "offset": position.offset,
        "limit": position.limit,
        "budget": plan.budget,
        "before_budget": plan.budget - 1,
        **{f"key{i}": value for i, value in enumerate(position.boundary or ())},
    }
    keys = None if position.boundary is None else len(position.boundary)
    walking = bool(plan.budget)

    def build() -> CompiledStatement:
        with compiling_shape():
            sql, params = build_page_statement(plan, keys, walking)
        return compile_statement(sql, params, *trees)

    shape = shape_of(*trees, plan.ordering, plan.exact_walk)
    if shape is None:
        statement = build()
    else:
        key = (shape, position.reverse, keys, plan.count, walking, plan.threshold, plan.bands_first)
        statement = PAGE_STATEMENTS.get(key, build)
    return statement.sql, statement.params(values)


#: Where a compiled statement takes the request's paging values: sentinel
#: numbers in LIMIT and OFFSET (which Django writes into the text), Params
#: elsewhere (see :mod:`core.customers.statements`).
OFFSET, LIMIT, BUDGET, BEFORE_BUDGET = (
    SENTINELS[name] for name in ("offset", "limit", "budget", "before_budget")
)


def build_page_statement(plan: Plan, keys: int | None, walking: bool) -> tuple[str, list]:
    """The page statement of a shape: the plan's ids, then their rows, each
    with the count where the plan counts (``COUNT(*) OVER ()`` where a sort
    reads every match anyway; else a count of its own, stopped just past the
    threshold where ``bounded``)."""
    reverse = plan.position.reverse
    boundary = None if keys is None else [Param(None, slot=f"key{i}") for i in range(keys)]
    plan_sql, plan_params = plan_statement(plan, boundary, walking)
    counted_sql, counted_params = count_sql(plan)
    total = RawSQL(
        f"coalesce((SELECT _total FROM page LIMIT 1), {counted_sql})",
        counted_params,
        output_field=IntegerField(),
    )
    ids = rows_of(plan).filter(id__in=RawSQL("SELECT id FROM page", []))
    rows = selected(ids, plan.ordering, total).order_by(*plan.ordering.order_by(reverse))
    rows_sql, rows_params = rows.query.sql_with_params()
    return PAGE.format(plan=plan_sql, rows=rows_sql), [*plan_params, *rows_params]


def rows_of(plan: Plan) -> QuerySet:
    """Every row of the read table (with the search's rank, where it orders them)."""
    rows = CustomerRow.objects.all()
    return rows.alias(**{SEARCH_RANK: plan.rank}) if plan.rank is not None else rows


def tested(condition: Q) -> Q:
    """``condition`` written so that PostgreSQL tests it on each row it reads,
    rather than reading rows through its indexes or pulling its subqueries
    up into joins: ``(condition) IS TRUE``."""
    if not condition:
        return condition
    return Q(IsTrue(ExpressionWrapper(condition, output_field=BooleanField())))


class IsTrue(Func):
    template = "(%(expressions)s) IS TRUE"
    output_field = BooleanField()


def plan_statement(plan: Plan, boundary: Sequence[Param] | None, walking: bool) -> tuple[str, list]:
    """The page's ids (and ``_total``), by the plan chosen:

    * a *walk* of the ordering's index where nothing is filtered, or every
      filter is a range of that index (its ids come from the index alone,
      however deep the OFFSET);
    * a *sort* of the matches, read through the narrowest filter's index,
      where the walk would cost more than the sort (its ``ORDER BY`` no
      index matches, see :class:`core.customers.ordering.Unindexed`);
    * else both: the walk, bounded to its budget of index entries, and the
      sort if the walk came up short (:data:`WALK_OR_SORT`).
    """
    reverse = plan.position.reverse
    seek = rows_after(plan.ordering, boundary, reverse) if boundary is not None else Q()
    if not plan.condition or (walking and plan.exact_walk):
        ids = walk_start(plan, seek).annotate(_total=NO_TOTAL)
        ids = ids.values_list("id", "_total")
        return ids[OFFSET : OFFSET + LIMIT].query.sql_with_params()
    sort_sql, sort_params = sort_statement(plan, boundary)
    if not walking:
        return sort_sql, sort_params
    walk_sql, walk_params = walk_statement(plan, seek)
    beyond = walk_start(plan, seek).values("id")[BEFORE_BUDGET : BEFORE_BUDGET + 1]
    beyond_sql, beyond_params = beyond.query.sql_with_params()
    sql = WALK_OR_SORT.format(walk=walk_sql, beyond=beyond_sql, sort=sort_sql)
    return sql, [*walk_params, Param(None, slot="limit"), *beyond_params, *sort_params]


def walk_start(plan: Plan, seek: Q) -> QuerySet:
    """The ordering's index from the cursor (and within the bounds the filters
    put on its own field, see :attr:`Plan.start`) on, in order."""
    order = plan.ordering.order_by(plan.position.reverse)
    return rows_of(plan).filter(plan.start & seek).order_by(*order)


def walk_statement(plan: Plan, seek: Q) -> tuple[str, list]:
    """The ids of the page's matches among the first ``budget`` entries of the
    ordering's index.

    ``SELECT id FROM (SELECT id, … ORDER BY … LIMIT budget) core_customer_list
    WHERE (condition) IS TRUE ORDER BY … LIMIT …``: the inner query reads the
    index in order, the outer stops as soon as the page is full. The
    condition is wrapped (``IS TRUE``) so that PostgreSQL tests it on each
    row read, hashing a subquery's values once, instead of turning it into
    a join that would lose the index's order; the walk's bounds are
    repeated plainly, so that PostgreSQL sees the outer order is the inner's
    (``last_name = 'Smith'`` makes ``ORDER BY last_name`` a no-op inside).
    """
    # Only the columns the outer query reads: PostgreSQL projects each row the
    # window passes, and all 19 columns cost 0.75 ms where these cost 0.65
    # (last_name=smith at 3M: 3,492 rows read for 51).
    keys = [key.expression for key in plan.ordering.keys]
    rank = [plan.rank] if plan.rank is not None else []
    read = columns_of(plan.condition, plan.start, *keys, *rank) | {"id"}
    # (A forced walk of the search's rank orders by an annotation: computed,
    # not a column.)
    window = walk_start(plan, seek).only(*(read & TABLE_COLUMNS))[:BUDGET]
    rows = rows_of(plan).filter(plan.start, tested(plan.condition))
    ids = rows.order_by(*plan.ordering.order_by(plan.position.reverse)).values("id")
    query = ids[OFFSET : OFFSET + LIMIT].query
    alias = query.get_initial_alias()
    query.alias_map[alias] = WindowTable(window, alias)
    sql, params = query.sql_with_params()
    return sql, list(params)


#: The read table's columns (a walk's window selects some of them).
TABLE_COLUMNS = frozenset(field.attname for field in CustomerRow._meta.concrete_fields)


def columns_of(*conditions: Q | Expression) -> set[str]:
    """The read table's columns that ``conditions`` name (in lookups and in
    ``F()`` within expressions)."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, Q):
            for child in node.children:
                if isinstance(child, tuple):
                    names.add(child[0].split(LOOKUP_SEP, 1)[0])
                    visit(child[1])
                else:
                    visit(child)
        elif isinstance(node, F):
            names.add(node.name)
        elif hasattr(node, "get_source_expressions"):
            for expression in node.get_source_expressions():
                visit(expression)

    for condition in conditions:
        visit(condition)
    return names


#: The sort of a search's first bands, and of every band if they did not
#: hold the page (see :func:`core.customers.plans.bands_first`).
FIRST_BANDS_OR_ALL = """
WITH best AS MATERIALIZED ({first})
SELECT * FROM best WHERE (SELECT count(*) FROM best) = %s
UNION ALL
SELECT * FROM ({every}) sorted WHERE (SELECT count(*) FROM best) < %s
"""


def sort_statement(plan: Plan, boundary: Sequence[Param] | None) -> tuple[str, list]:
    """The ids of the page's matches, sorted (:func:`matches_sorted`); for a
    search, first from its best bands alone where the plan says they hold
    the page (:data:`FIRST_BANDS_OR_ALL`)."""
    if plan.bands is None or plan.bands_first == len(plan.bands):
        return matches_sorted(plan, boundary, plan.bands)
    first_sql, first_params = matches_sorted(plan, boundary, plan.bands[: plan.bands_first])
    every_sql, every_params = matches_sorted(plan, boundary, plan.bands)
    limit = Param(None, slot="limit")
    sql = FIRST_BANDS_OR_ALL.format(first=first_sql, every=every_sql)
    return sql, [*first_params, limit, *every_params, limit]


def matches_sorted(
    plan: Plan, boundary: Sequence[Param] | None, bands: tuple[tuple[Any, Q], ...] | None
) -> tuple[str, list]:
    """The ids of the page's matches, read through their filters' indexes and
    sorted: an ``ORDER BY`` that no index matches, and the cursor as a
    filter of the matches (as an index condition, PostgreSQL would read the
    cursor's range of the ordering's index instead). Where no cursor
    narrows them, the ids come with ``COUNT(*) OVER ()``: every match."""
    ordering, reverse = plan.ordering, plan.position.reverse
    if bands is not None:
        rows = banded_matches(plan, boundary, bands)
    elif boundary is not None:
        rows = matches(plan).filter(rows_after(ordering, boundary, reverse, unindexed=True))
    else:
        rows = matches(plan)
    counting = plan.count in (BOUNDED, EXACT) and boundary is None
    total = Window(RowCount("*")) if counting else NO_TOTAL
    ids = rows.annotate(_total=total).values_list("id", "_total")
    ids = ids.order_by(*ordering.order_by(reverse, unindexed=True))
    return ids[OFFSET : OFFSET + LIMIT].query.sql_with_params()


def matches(plan: Plan, *, ranked: bool = True) -> QuerySet:
    """The matching rows, unordered: found through the plan's ``access``
    conditions' indexes, the others tested on each row (and without the
    search's rank where nothing orders them: a count)."""
    rows = rows_of(plan) if ranked else CustomerRow.objects.all()
    return rows.filter(plan.access, tested(plan.tests))


#: The column of :func:`banded_matches` that holds each match's rank.
BAND_RANK = "band_rank"


def banded_matches(
    plan: Plan, boundary: Sequence[Param] | None, bands: tuple[tuple[Any, Q], ...]
) -> QuerySet:
    """The matches of a one-word search after the cursor's ``boundary``, as
    :func:`matches` gives them, read band by band of the rank
    (:meth:`core.customers.search.SearchMatch.bands`):
    ``FROM (SELECT id, <rank> AS band_rank … UNION ALL …) core_customer_list``.

    Each band is one name's (or place's) b-tree read for the band's values,
    and both names, what the bands test, are in it: no row of the table is
    read where nothing else is filtered, and no rank computed
    (``search=smith`` at 3M: 37,063 rows read and ranked in 106 ms before).
    The cursor is each band's, its rank spelled out as the constant it is
    there: PostgreSQL skips the bands ranked before the cursor's unread.
    """
    reverse = plan.position.reverse
    after = Q()
    if boundary is not None:
        after = rows_after(plan.ordering, boundary, reverse, unindexed=True, spelled_out=True)
    read = []
    for score, band in bands:
        rows = CustomerRow.objects.alias(**{SEARCH_RANK: Cast(score, FloatField())})
        rows = rows.filter(band, plan.others, after)
        rows = rows.annotate(**{BAND_RANK: F(SEARCH_RANK)})
        read.append(rows.values("id", BAND_RANK).order_by())
    union = read[0].union(*read[1:], all=True)
    column = f'{connection.ops.quote_name(CustomerRow._meta.db_table)}."{BAND_RANK}"'
    rows = CustomerRow.objects.alias(**{SEARCH_RANK: RawSQL(column, [], FloatField())})
    alias = rows.query.get_initial_alias()
    rows.query.alias_map[alias] = WindowTable(union, alias)
    return rows


def count_sql(plan: Plan) -> tuple[str, list]:
    """The count every row of a page carries, as the plan counts: every match
    (``exact``), every match up to just past the threshold (``bounded``), or
    none (NULL: the estimate stands)."""
    if plan.count not in (BOUNDED, EXACT):
        return "NULL::integer", []
    counted = matches(plan, ranked=False).values("id")
    if plan.count == BOUNDED:
        counted = counted[: plan.threshold + 1]
    sql, params = counted.query.sql_with_params()
    return f"(SELECT count(*) FROM ({sql}) counted)", list(params)


def selected(rows: QuerySet, ordering: Ordering, total: Expression) -> QuerySet:
    """The row's columns, each key value (a cursor is made of them), and the count."""
    columns = row_expressions()
    keys = {f"_key{i}": key.expression for i, key in enumerate(ordering.keys)}
    return rows.annotate(**columns, **keys, _total=total).values_list(*columns, *keys, "_total")


class WindowTable(BaseTable):
    """The first rows of a queryset as the FROM of another query, under the
    table's own name, so that the outer query's columns still name it:
    ``FROM (SELECT … LIMIT 5000) "core_customer_list"``."""

    def __init__(self, queryset: QuerySet, alias: str) -> None:
        super().__init__(queryset.model._meta.db_table, alias)
        self.queryset = queryset

    def as_sql(self, compiler, connection) -> tuple[str, list]:
        sql, params = self.queryset.query.get_compiler(connection=connection).as_sql()
        return f"({sql}) {compiler.quote_name_unless_alias(self.table_alias)}", list(params)

    def relabeled_clone(self, change_map):
        return self.__class__(self.queryset, change_map.get(self.table_alias, self.table_alias))

    @property
    def identity(self):
        return self.__class__, self.table_name, self.table_alias, id(self.queryset)
