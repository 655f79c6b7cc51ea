"""The page statement: one SQL statement per page, its ids by the plan chosen,
then their rows and the count.

Written by the ORM once per shape of request and kept
(:data:`PAGE_STATEMENTS`, see :mod:`core.customers.statements`): the walk of
the ordering's index, the sort of the matches, or a bounded walk that falls
back to the sort (:func:`plan_statement`), chosen by :func:`plan_budget` from
the planning sample. :mod:`core.customers.pagination` runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db.models import (
    BigIntegerField,
    Expression,
    F,
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
from .ordering import Ordering, rows_after
from .plans import BOUNDED, EXACT, walk_budget
from .selectors import CustomerList, tested
from .statements import (
    SENTINELS,
    CompiledStatement,
    Param,
    StatementCache,
    compile_statement,
    compiling_shape,
)

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


#: A forced walk's budget: every entry of the index if need be.
WALK_AS_FAR_AS_IT_TAKES = 2**62

#: The ``_total`` of a plan that does not count.
NO_TOTAL = Cast(Value(None), BigIntegerField())


#: Compiled page statements kept per process (see
#: :mod:`core.customers.statements`). A shape is the filters present (and
#: what kind of value each has: a list of known names, a text to test, an
#: inclusive or exclusive bound), the ordering and direction, cursor or not,
#: the plan and the count's plan. bench_matrix's seed 1 at 3M (its 219
#: combinations without a cursor, each with its next page) makes 291 shapes:
#: they fit with room (test_statements checks it), so that a client's usual
#: requests stay compiled while others come and go.
STATEMENT_CACHE_SIZE = 512

#: The compiled page statements of this process.
PAGE_STATEMENTS = StatementCache(STATEMENT_CACHE_SIZE)


def page_statement(
    customers: CustomerList,
    *,
    reverse: bool,
    offset: int,
    limit: int,
    boundary: Sequence[Any] | None,
    count: str,
    forced: str | None = None,
) -> tuple[str, list]:
    """The one statement that reads a page and its count (:data:`PAGE`),
    compiled once per shape (:data:`PAGE_STATEMENTS`) and given this
    request's values.

    ``forced`` ("walk" or "sort") overrides the plan's choice: what
    bench_matrix times the choice against."""
    budget = plan_budget(customers, reverse, offset + limit, boundary, forced)
    values = {
        **customers.values,
        "offset": offset,
        "limit": limit,
        "budget": budget,
        "before_budget": budget - 1,
        **{f"key{i}": value for i, value in enumerate(boundary or ())},
    }
    threshold = settings.CRM_EXACT_COUNT_THRESHOLD
    keys = None if boundary is None else len(boundary)

    def build() -> CompiledStatement:
        with compiling_shape():
            sql, params = build_page_statement(customers, reverse, keys, count, bool(budget))
        return compile_statement(sql, params)

    if customers.shape is None:
        statement = build()
    else:
        shape = (customers.shape, reverse, keys, count, bool(budget), threshold)
        statement = PAGE_STATEMENTS.get(shape, build)
    return statement.sql, statement.params(values)


def plan_budget(
    customers: CustomerList,
    reverse: bool,
    needed: int,
    boundary: Sequence[Any] | None,
    forced: str | None = None,
) -> int:
    """How many entries of the ordering's index a walk may read before the
    page statement sorts the matches instead (0: sort at once), chosen by
    :func:`core.customers.plans.walk_budget` from the sample's estimate.

    A list that filters nothing is always walked, however deep: its ids
    come from the index alone."""
    if not customers.condition or forced == "walk":
        return WALK_AS_FAR_AS_IT_TAKES
    if forced == "sort" or not customers.ordering.indexed:
        return 0
    if customers.exact_walk:
        return WALK_AS_FAR_AS_IT_TAKES  # every entry it reads is a match
    expected = customers.walk_entries(needed, boundary, reverse)
    return walk_budget(customers.estimate, expected, needed, customers.walk_follows())


#: Where a compiled statement takes the request's paging values: sentinel
#: numbers in LIMIT and OFFSET (which Django writes into the text), Params
#: elsewhere (see :mod:`core.customers.statements`).
OFFSET, LIMIT, BUDGET, BEFORE_BUDGET = (
    SENTINELS[name] for name in ("offset", "limit", "budget", "before_budget")
)


def build_page_statement(
    customers: CustomerList, reverse: bool, keys: int | None, count: str, walking: bool
) -> tuple[str, list]:
    """The page statement of a shape: the plan's ids, then their rows, each
    with the count where ``count`` asks for one (``COUNT(*) OVER ()`` where a
    sort reads every match anyway; else a count of its own, stopped just
    past the threshold where ``bounded``)."""
    boundary = None if keys is None else [Param(None, slot=f"key{i}") for i in range(keys)]
    plan_sql, plan_params = plan_statement(customers, reverse, boundary, count, walking)
    counted_sql, counted_params = count_sql(customers, count)
    total = RawSQL(
        f"coalesce((SELECT _total FROM page LIMIT 1), {counted_sql})",
        counted_params,
        output_field=IntegerField(),
    )
    ids = customers.rows().filter(id__in=RawSQL("SELECT id FROM page", []))
    rows = selected(ids, customers.ordering, total).order_by(*customers.ordering.order_by(reverse))
    rows_sql, rows_params = rows.query.sql_with_params()
    return PAGE.format(plan=plan_sql, rows=rows_sql), [*plan_params, *rows_params]


def plan_statement(
    customers: CustomerList,
    reverse: bool,
    boundary: Sequence[Param] | None,
    count: str,
    walking: bool,
) -> tuple[str, list]:
    """The page's ids (and ``_total``), by the plan :func:`plan_budget` chose:

    * a *walk* of the ordering's index where nothing is filtered, or every
      filter is a range of that index (its ids come from the index alone,
      however deep the OFFSET);
    * a *sort* of the matches, read through the narrowest filter's index,
      where the walk would cost more than the sort (its ``ORDER BY`` no
      index matches, see :class:`core.customers.ordering.Unindexed`);
    * else both: the walk, bounded to its budget of index entries, and the
      sort if the walk came up short (:data:`WALK_OR_SORT`).
    """
    ordering = customers.ordering
    seek = rows_after(ordering, boundary, reverse) if boundary is not None else Q()
    if not customers.condition or (walking and customers.exact_walk):
        ids = walk_start(customers, seek, reverse).annotate(_total=NO_TOTAL)
        ids = ids.values_list("id", "_total")
        return ids[OFFSET : OFFSET + LIMIT].query.sql_with_params()
    sort_sql, sort_params = sort_statement(customers, reverse, boundary, count)
    if not walking:
        return sort_sql, sort_params
    walk_sql, walk_params = walk_statement(customers, seek, reverse)
    beyond = walk_start(customers, seek, reverse).values("id")[BEFORE_BUDGET : BEFORE_BUDGET + 1]
    beyond_sql, beyond_params = beyond.query.sql_with_params()
    sql = WALK_OR_SORT.format(walk=walk_sql, beyond=beyond_sql, sort=sort_sql)
    return sql, [*walk_params, Param(None, slot="limit"), *beyond_params, *sort_params]


def walk_start(customers: CustomerList, seek: Q, reverse: bool) -> QuerySet:
    """The ordering's index from the cursor (and within the bounds the filters
    put on its own field, see :attr:`CustomerList.start`) on, in order."""
    start = customers.start & seek
    return customers.rows().filter(start).order_by(*customers.ordering.order_by(reverse))


def walk_statement(customers: CustomerList, seek: Q, reverse: bool) -> tuple[str, list]:
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
    keys = [key.expression for key in customers.ordering.keys]
    rank = [customers.search.rank] if customers.search is not None else []
    read = columns_of(customers.condition, customers.start, *keys, *rank) | {"id"}
    # (A forced walk of the search's rank orders by an annotation: computed,
    # not a column.)
    window = walk_start(customers, seek, reverse).only(*(read & TABLE_COLUMNS))[:BUDGET]
    rows = customers.rows().filter(customers.start, tested(customers.condition))
    ids = rows.order_by(*customers.ordering.order_by(reverse)).values("id")
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


def sort_statement(
    customers: CustomerList, reverse: bool, boundary: Sequence[Param] | None, count: str
) -> tuple[str, list]:
    """The ids of the page's matches, read through their filters' indexes and
    sorted: an ``ORDER BY`` that no index matches, and the cursor as a
    filter of the matches (as an index condition, PostgreSQL would read the
    cursor's range of the ordering's index instead). Where no cursor
    narrows them, the ids come with ``COUNT(*) OVER ()``: every match."""
    ordering = customers.ordering
    rows = customers.matches()
    if boundary is not None:
        rows = rows.filter(rows_after(ordering, boundary, reverse, unindexed=True))
    counting = count in (BOUNDED, EXACT) and boundary is None
    total = Window(RowCount("*")) if counting else NO_TOTAL
    ids = rows.annotate(_total=total).values_list("id", "_total")
    ids = ids.order_by(*ordering.order_by(reverse, unindexed=True))
    return ids[OFFSET : OFFSET + LIMIT].query.sql_with_params()


def count_sql(customers: CustomerList, count: str) -> tuple[str, list]:
    """The count every row of a page carries, as ``count`` plans it: of every
    match (``exact``), of every match up to just past the threshold
    (``bounded``), or none (NULL: the estimate stands)."""
    if count not in (BOUNDED, EXACT):
        return "NULL::integer", []
    matches = customers.matches(ranked=False).values("id")
    if count == BOUNDED:
        matches = matches[: settings.CRM_EXACT_COUNT_THRESHOLD + 1]
    sql, params = matches.query.sql_with_params()
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
