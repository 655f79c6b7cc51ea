"""Pages of the customer list: the page statement, cursors, links and counts.

One module owns the paging protocol. :class:`CustomerPagination` is what a
view uses, in the shape of DRF's own ``CursorPagination``: configuration as
commented attributes, and one small hook per step (``decode_cursor``,
``encode_cursor``, ``get_next_link``, ``get_previous_link``,
``get_paginated_response``). Underneath, :func:`keyset_page` and
:func:`offset_page` fetch a page and its count with one statement
(:func:`page_statement`).

Why not DRF's ``CursorPagination``: its cursor is an offset from the nearest
unique position of a *single* ordering field and it pages through
``queryset.filter(field__gt=…)``; ours seeks on the whole key (several
fields plus a tie-breaker, mixed directions) with one row comparison that a
``(field, id)`` b-tree answers as an index condition (see
:mod:`core.customers.ordering`), and it counts by an estimate where DRF's
``PageNumberPagination`` runs ``COUNT(*)``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import connections
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
from django.utils.crypto import salted_hmac
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from crm.replicas import read_alias

from .columns import ROW, row_expressions
from .ordering import Ordering, rows_after
from .plans import BOUNDED, EXACT, NONE, count_plan, walk_budget
from .selectors import CustomerList, tested
from .statements import (
    SENTINELS,
    CompiledStatement,
    Param,
    StatementCache,
    compile_statement,
    compiling_shape,
)

# -- one page ----------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    value: int | None
    is_estimate: bool


@dataclass(frozen=True)
class Page:
    """A page's rows (the :data:`~core.customers.columns.ROW` columns, then
    the ordering's key values), whether pages follow and precede it, and
    the count of every match."""

    rows: list[tuple]
    has_next: bool
    has_previous: bool
    count: Count

    def key_values(self, row: tuple, ordering: Ordering) -> list[Any]:
        """The sort key of ``row``: what a cursor pointing at it carries."""
        return list(row[len(ROW) : len(ROW) + len(ordering.keys)])


def keyset_page(
    customers: CustomerList,
    *,
    size: int,
    after: Sequence[Any] | None = None,
    before: Sequence[Any] | None = None,
    count: str = "estimated",
) -> Page:
    """The ``size`` rows after ``after`` (or before ``before``), in the list's ordering.

    ``size + 1`` rows: the extra row says whether another page follows.
    Going backwards reads the reversed order and flips the result.
    """
    reverse = before is not None
    boundary = before if reverse else after
    rows, total = page_rows(
        customers, reverse=reverse, offset=0, limit=size + 1, boundary=boundary, count=count
    )
    more = len(rows) > size
    rows = rows[:size]
    if reverse:
        rows.reverse()
        return Page(rows, has_next=True, has_previous=more, count=total)
    if boundary is None and not more:
        total = Count(len(rows), False) if count != NONE else total  # every match is here
    return Page(rows, has_next=more, has_previous=after is not None, count=total)


def offset_page(customers: CustomerList, *, page: int, size: int, count: str = "estimated") -> Page:
    """Page ``page`` (1-based) by OFFSET, for clients that number their pages.

    The deeper the page, the more index entries PostgreSQL skips (see
    :func:`page_rows`): cursors do not.
    """
    offset = (page - 1) * size
    rows, total = page_rows(customers, offset=offset, limit=size + 1, count=count)
    more = len(rows) > size
    if not more and rows and count != NONE:
        total = Count(offset + len(rows), False)  # the last page: every match seen
    return Page(rows[:size], has_next=more, has_previous=page > 1, count=total)


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


def page_rows(
    customers: CustomerList,
    *,
    reverse: bool = False,
    offset: int,
    limit: int,
    boundary: Sequence[Any] | None = None,
    count: str = "estimated",
) -> tuple[list[tuple], Count]:
    """The rows ``offset`` to ``offset + limit`` of the list after ``boundary``
    (a cursor's key values), and the count: one statement (see
    :func:`page_statement`)."""
    threshold = settings.CRM_EXACT_COUNT_THRESHOLD
    counting = count_plan(customers.estimate, count, threshold)
    sql, params = page_statement(
        customers, reverse=reverse, offset=offset, limit=limit, boundary=boundary, count=counting
    )
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    rows = [row[:-1] for row in found]
    total = found[0][-1] if found else None
    if counting == NONE:
        return rows, Count(None, False)
    if total is None and not found and boundary is None and offset == 0:
        return rows, Count(0, False)  # nothing matches
    if total is None:
        return rows, Count(customers.estimate.matches, True)
    if counting == BOUNDED and total > threshold:
        return rows, Count(max(threshold + 1, customers.estimate.matches), True)
    return rows, Count(total, False)


#: Compiled page statements kept per process (see
#: :mod:`core.customers.statements`). A shape is the filters present (and
#: what kind of value each has: a list of known names, a text to test, an
#: inclusive or exclusive bound), the ordering and direction, cursor or not,
#: the plan and the count's plan. The 300 combinations of bench_matrix's
#: seed 1 make 211 shapes (test_statements checks that they fit, so that a
#: client's usual requests stay compiled while others come and go).
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
    read = {"id", *(key.column for key in customers.ordering.keys)}
    read |= columns_of(customers.condition, customers.start)
    window = walk_start(customers, seek, reverse).only(*read)[:BUDGET]
    rows = customers.rows().filter(customers.start, tested(customers.condition))
    ids = rows.order_by(*customers.ordering.order_by(reverse)).values("id")
    query = ids[OFFSET : OFFSET + LIMIT].query
    alias = query.get_initial_alias()
    query.alias_map[alias] = WindowTable(window, alias)
    sql, params = query.sql_with_params()
    return sql, list(params)


def columns_of(*conditions: Q) -> set[str]:
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


# -- cursors -----------------------------------------------------------------


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


class InvalidCursor(ValueError):
    """A cursor that was not issued by this server for this ordering."""


# -- the paginator -------------------------------------------------------------


class CustomerPagination:
    """Pages of the customer list, by cursor (the default) or by page number.

    Without ``page``, a client follows ``next`` and ``previous``: encrypted,
    opaque cursors holding the sort key of a boundary row, so that page 50,000
    costs what page 1 costs. With ``page=N`` it gets numbered pages (and
    ``page``, ``page_size``, ``num_pages`` in the body), for clients that
    need them; the deeper the page, the more index entries PostgreSQL skips.
    """

    #: Rows per page when the client does not say (``page_size``).
    page_size = 50
    #: The most rows a client may ask for in one page.
    max_page_size = 500
    #: The query parameter of cursor mode.
    cursor_query_param = "cursor"
    #: The query parameter of page-number mode.
    page_query_param = "page"
    #: Derives the cursors' own key from the secret key, so that no other
    #: value this project seals or signs can pass for a cursor.
    cursor_salt = "core.customers.cursor"

    def paginate_queryset(
        self,
        customers: CustomerList,
        request: Request,
        *,
        page_size: int | None = None,
        page: int | None = None,
        cursor: str | None = None,
        count: str = "estimated",
    ) -> list[tuple]:
        """Fetch the page the request asks for and its count, and remember what
        the links need."""
        self.request, self.ordering = request, customers.ordering
        self.url = request.build_absolute_uri()
        self.size = page_size or self.page_size
        self.number = page
        if page is not None:
            self.page = offset_page(customers, page=page, size=self.size, count=count)
            if not self.page.rows and page > 1:
                raise NotFound(f"Page {page} is past the end of the results.")
        else:
            after, before = self.decode_cursor(cursor)
            self.page = keyset_page(
                customers, size=self.size, after=after, before=before, count=count
            )
        self.count = self.page.count
        return self.page.rows

    def decode_cursor(self, token: str | None) -> tuple[list | None, list | None]:
        """``cursor`` as (after, before) key values of the ordering, or a 400."""
        if token is None:
            return None, None
        try:
            values, backwards = cursor_position(token, self.ordering, salt=self.cursor_salt)
        except InvalidCursor as exc:
            raise ValidationError({self.cursor_query_param: [str(exc)]}) from None
        return (None, values) if backwards else (values, None)

    def encode_cursor(self, values: list, backwards: bool) -> str:
        """A link to the rows after (or before) the row whose key is ``values``."""
        token = cursor_token(self.ordering, values, backwards, salt=self.cursor_salt)
        return replace_query_param(self.url, self.cursor_query_param, token)

    def get_next_link(self) -> str | None:
        if not self.page.has_next:
            return None
        if self.number is not None:
            return replace_query_param(self.url, self.page_query_param, self.number + 1)
        if not self.page.rows:
            return None
        return self.encode_cursor(self.page.key_values(self.page.rows[-1], self.ordering), False)

    def get_previous_link(self) -> str | None:
        if not self.page.has_previous:
            return None
        if self.number is not None:
            return replace_query_param(self.url, self.page_query_param, self.number - 1)
        if not self.page.rows:
            # An empty page after a cursor: the previous page ends where it began.
            return remove_query_param(self.url, self.cursor_query_param)
        return self.encode_cursor(self.page.key_values(self.page.rows[0], self.ordering), True)

    def get_paginated_response(self, data: list[dict[str, Any]]) -> Response:
        body: dict[str, Any] = {
            "count": self.count.value,
            "count_is_estimate": self.count.is_estimate,
            "next": self.get_next_link(),
            "previous": self.get_previous_link(),
        }
        if self.number is not None:
            body["page"], body["page_size"] = self.number, self.size
            body["num_pages"] = (
                max(1, math.ceil(self.count.value / self.size))
                if self.count.value is not None
                else None
            )
        body["results"] = data
        return Response(body)


@functools.lru_cache(maxsize=8)
def _cipher(salt: str, key: str) -> AESGCM:
    # One key per salt and secret key, derived once (an HMAC-SHA256 of the
    # secret: 32 bytes, AES-256).
    return AESGCM(salted_hmac(salt, "cursor", secret=key, algorithm="sha256").digest())


#: Bytes of the random nonce each cursor starts with (AES-GCM's standard size).
NONCE_BYTES = 12


def seal(payload: dict[str, Any], *, salt: str) -> str:
    """``payload`` encrypted and authenticated: URL-safe, opaque to its holder.

    Why not a signature (``django.core.signing``): a signed cursor is plain
    base64, and a cursor holds a boundary row's key values, a customer's
    birthday or name, which then travel in URLs, access logs and browser
    histories. AES-GCM hides them and still refuses a token that was not
    issued with this secret key and salt.
    """
    nonce = os.urandom(NONCE_BYTES)
    data = json.dumps(payload, separators=(",", ":")).encode()
    sealed = nonce + _cipher(salt, settings.SECRET_KEY).encrypt(nonce, data, None)
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()


def unseal(token: str, *, salt: str) -> Any:
    """The inverse of :func:`seal`; raises ValueError on a token it did not issue."""
    try:
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = _cipher(salt, settings.SECRET_KEY).decrypt(
            sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], None
        )
    except (InvalidTag, binascii.Error, ValueError, UnicodeEncodeError):
        raise ValueError("not a cursor of this server") from None
    return json.loads(data)


def cursor_token(ordering: Ordering, values: Sequence[Any], backwards: bool, *, salt: str) -> str:
    """An encrypted position: the key values of a boundary row, the ordering
    they belong to, and the direction to read from there."""
    return seal(
        {"o": ordering.spec, "k": [key_to_json(v) for v in values], "b": int(backwards)},
        salt=salt,
    )


def cursor_position(token: str, ordering: Ordering, *, salt: str) -> tuple[list, bool]:
    """The inverse of :func:`cursor_token`: (key values, backwards), or :class:`InvalidCursor`."""
    try:
        payload = unseal(token, salt=salt)
        issued_for, raw_values, backwards = payload["o"], payload["k"], bool(payload["b"])
    except (KeyError, TypeError, ValueError):
        raise InvalidCursor(
            "Invalid cursor: use the next or previous link of a response."
        ) from None
    if issued_for != ordering.spec:
        raise InvalidCursor(
            f"This cursor belongs to ordering {issued_for!r}; "
            f"the request asks for {ordering.spec!r}."
        )
    try:
        values = [
            key_from_json(key.kind, value)
            for key, value in zip(ordering.keys, raw_values, strict=True)
        ]
    except (TypeError, ValueError):
        raise InvalidCursor("Invalid cursor: its position is malformed.") from None
    return values, backwards
