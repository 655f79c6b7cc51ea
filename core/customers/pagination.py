"""Pages of the customer list: keyset and offset pages, cursors, links and counts.

One module owns the paging protocol. :class:`CustomerPagination` is what a
view uses, in the shape of DRF's own ``CursorPagination``: configuration as
commented attributes, and one small hook per step (``decode_cursor``,
``encode_cursor``, ``get_next_link``, ``get_previous_link``,
``get_paginated_response``). Underneath, :func:`keyset_page` and
:func:`offset_page` fetch a page and :func:`customer_count` counts.

Why not DRF's ``CursorPagination``: its cursor is an offset from the nearest
unique position of a *single* ordering field and it pages through
``queryset.filter(field__gt=…)``; ours seeks on the whole key (several
fields plus a tie-breaker, mixed directions, a joined table's columns) with
one row comparison that a ``(sort column, id)`` b-tree answers as an index
condition (see :mod:`core.customers.ordering`), and it counts by the
planner's estimate where DRF's ``PageNumberPagination`` runs ``COUNT(*)``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import Count as RowCount
from django.db.models import QuerySet, Subquery, Window
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from crm.replicas import read_alias

from .columns import ROW, row_expressions
from .ordering import Ordering, rows_after

# -- one page ----------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """A page's rows (the :data:`~core.customers.columns.ROW` columns, then
    the ordering's key values) and whether pages follow and precede it."""

    rows: list[tuple]
    has_next: bool
    has_previous: bool
    #: Every matching customer, when fetching the page counted them anyway.
    total: int | None = None

    def key_values(self, row: tuple, ordering: Ordering) -> list[Any]:
        """The sort key of ``row``: what a cursor pointing at it carries."""
        return list(row[len(ROW) : len(ROW) + len(ordering.keys)])


def page_query(queryset: QuerySet, ordering: Ordering) -> QuerySet:
    """Select the row's columns plus each key value (a cursor is made of them)."""
    columns = row_expressions()
    keys = {f"_key{i}": key.expression for i, key in enumerate(ordering.keys)}
    return queryset.annotate(**columns, **keys).values_list(*columns, *keys)


def keyset_page(
    queryset: QuerySet,
    ordering: Ordering,
    *,
    size: int,
    after: Sequence[Any] | None = None,
    before: Sequence[Any] | None = None,
) -> Page:
    """The ``size`` rows after ``after`` (or before ``before``), in ``ordering``.

    ``size + 1`` rows: the extra row says whether another page follows.
    Going backwards reads the reversed order and flips the result.
    """
    reverse = before is not None
    boundary = before if reverse else after
    rows, total = page_rows(
        queryset, ordering, reverse=reverse, offset=0, limit=size + 1, boundary=boundary
    )
    more = len(rows) > size
    rows = rows[:size]
    if reverse:
        rows.reverse()
        return Page(rows, has_next=True, has_previous=more, total=total)
    return Page(rows, has_next=more, has_previous=after is not None, total=total)


def offset_page(queryset: QuerySet, ordering: Ordering, *, page: int, size: int) -> Page:
    """Page ``page`` (1-based) by OFFSET, for clients that number their pages.

    The deeper the page, the more index entries PostgreSQL skips (see
    :func:`page_rows`): cursors do not.
    """
    rows, total = page_rows(queryset, ordering, offset=(page - 1) * size, limit=size + 1)
    more = len(rows) > size
    return Page(rows[:size], has_next=more, has_previous=page > 1, total=total)


#: Below this OFFSET a plain walk is as fast as a deferred join (see
#: :func:`page_rows`) and one query cheaper to build.
DEFERRED_JOIN_OFFSET = 1000


def page_rows(
    queryset: QuerySet,
    ordering: Ordering,
    *,
    reverse: bool = False,
    offset: int,
    limit: int,
    boundary: Sequence[Any] | None = None,
) -> tuple[list[tuple], int | None]:
    """The rows ``offset`` to ``offset + limit`` of ``queryset`` in ``ordering``
    after ``boundary`` (a cursor's key values), and how many rows ``queryset``
    has if that came for free.

    Unfiltered and not deep, a walk of the ordering's index selects the rows
    as it goes: one query. Otherwise a *deferred join*: the inner query finds
    the page's ids with the narrowest scan that can (a walk of the ordering's
    index alone, testing membership sets; a sort of the matches by their keys
    alone; an index-only skip of OFFSET entries), without touching the rows
    it does not filter or sort on; only the page's rows are then joined and
    fetched (see :class:`core.customers.selectors.ListPlan`).

    A sort reads every match anyway: where no cursor narrows ``queryset``,
    the ids come with ``COUNT(*) OVER ()``, the exact count, in a query of
    their own; the page's rows are a second query.
    """
    plan = getattr(queryset, "plan", None)
    if plan is None and offset < DEFERRED_JOIN_OFFSET:
        if boundary is not None:
            queryset = queryset.filter(rows_after(ordering, boundary, reverse))
        order = ordering.order_by(reverse)
        return list(page_query(queryset, ordering).order_by(*order)[offset : offset + limit]), None
    sort = plan is not None and plan.sort
    order = ordering.order_by(reverse, unindexed=sort)
    # The outer query reads only the page's ids (its filters, true for them
    # anyway, cost nothing more; written as joins, not a walk's membership
    # tests); it carries the queryset's annotations, such as a search's rank,
    # that the ordering may use.
    outer = queryset.with_joins() if hasattr(queryset, "with_joins") else queryset
    # The inner query finds the ids, from the loyalty records alone where it can.
    records = getattr(queryset, "records", None)
    keyed = getattr(queryset, "keyed", None)
    found, keys, pk = queryset, ordering, "pk"
    if records is not None:
        found, keys, pk = records, ordering.on_records(), "appuser_id"
    elif sort and keyed is not None:
        # The matches first, from indexes and sets alone; then the sort keys
        # of those only (see ListPlan.filter_first).
        found = keyed.filter(pk__in=Fenced(queryset.values("pk")))
    if boundary is not None:
        # A sort's cursor is a filter, not a range of the ordering's index.
        found = found.filter(rows_after(keys, boundary, reverse, unindexed=sort))
    found = found.order_by(*keys.order_by(reverse, unindexed=sort))
    if sort and boundary is None:
        counted = list(
            found.annotate(_total=Window(RowCount("*"))).values_list(pk, "_total")[
                offset : offset + limit
            ]
        )
        if not counted:
            return [], None
        ids = [key for key, _ in counted]
        rows = page_query(outer.filter(pk__in=ids), ordering).order_by(*order)
        return list(rows), counted[0][1]
    ids = found.values(pk)[offset : offset + limit]
    return list(page_query(outer.filter(pk__in=ids), ordering).order_by(*order)), None


class Fenced(Subquery):
    """``(SELECT … OFFSET 0)``: a subquery PostgreSQL must run as written.

    Without the fence, ``id IN (SELECT id FROM core_appuser WHERE …)`` is
    pulled up into its parent, and PostgreSQL 18 then removes the self-join
    on the primary key: the filters, meant to be answered from indexes and
    sets before any row is read, are tested on every row the parent reads.
    """

    template = "(%(subquery)s OFFSET 0)"


# -- counts ------------------------------------------------------------------


#: Estimates up to this many times the exact-count threshold are checked by a
#: bounded count: an estimate is a guess, and a count under the threshold must
#: be exact (the planner's estimates are within 2x for 95% of the matrix's
#: combinations; see bench_matrix).
COUNT_MARGIN = 2
#: Above the threshold (but within the margin), a count is made only if the
#: plan expects it to cost less than this (µs; see ListPlan.count_us).
COUNT_BUDGET_US = 20_000
#: Under the threshold too, a count expected to cost more than this settles
#: for the estimate: an exact count of 3,000 customers that takes half a
#: second (every customer's phone number read to find "2 4" among the
#: Austrians) is a cliff the page itself does not have.
EXACT_COUNT_BUDGET_US = 200_000


@dataclass(frozen=True)
class Count:
    value: int | None
    is_estimate: bool


def estimate_count(queryset: QuerySet) -> int:
    """The planner's estimate of how many rows ``queryset`` returns.

    ``EXPLAIN`` costs a planning pass (well under a millisecond) where an exact
    ``COUNT(*)`` over millions of rows costs hundreds of milliseconds. The
    estimate comes from the statistics ``ANALYZE`` gathers; for a combination
    of filters it assumes they are independent. A queryset planned by
    :func:`core.customers.selectors.customer_list` carries a better one,
    made per table.
    """
    plan = getattr(queryset, "plan", None)
    if plan is not None:
        return plan.estimate
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
    return planner_rows(queryset)


def planner_rows(queryset: QuerySet) -> int:
    """The planner's estimate of the rows ``queryset`` returns (EXPLAIN, no execution)."""
    try:
        sql, params = queryset.values("pk").query.sql_with_params()
    except EmptyResultSet:
        return 0
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
    # A walk's membership tests need a driving scan that a count lacks: count
    # the same customers with every filter as a join (see CustomerList).
    counting = queryset.with_joins() if hasattr(queryset, "with_joins") else queryset
    plan = getattr(queryset, "plan", None)
    if plan is not None and plan.exact:
        return Count(plan.estimate, False)
    if mode == "estimated":
        estimate = estimate_count(queryset)
        if estimate > exact_threshold * COUNT_MARGIN:
            return Count(estimate, True)
        count_us = plan.count_us if plan is not None else 0.0
        if estimate > exact_threshold and count_us > COUNT_BUDGET_US:
            # Likely over the threshold, and a count would read far more
            # rows than it counts: the estimate will do.
            return Count(estimate, True)
        if count_us > EXACT_COUNT_BUDGET_US:
            return Count(estimate, True)
        # Near or under the threshold: count, but no further than just past
        # it, so that an estimate that was too low costs a bounded count.
        counted = counting.values("pk")[: exact_threshold + 1].count()
        if counted > exact_threshold:
            return Count(max(estimate, counted), True)
        return Count(counted, False)
    return Count(counting.count(), False)


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

    Without ``page``, a client follows ``next`` and ``previous``: signed,
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
    #: Keeps a signature of any other signed value of this project (the
    #: read-your-writes cookie, say) from passing for a cursor.
    cursor_salt = "core.customers.cursor"

    def paginate_queryset(
        self,
        queryset: QuerySet,
        ordering: Ordering,
        request: Request,
        *,
        page_size: int | None = None,
        page: int | None = None,
        cursor: str | None = None,
        count: str = "estimated",
    ) -> list[tuple]:
        """Fetch the page the request asks for, count, and remember what the links need."""
        self.request, self.ordering = request, ordering
        self.url = request.build_absolute_uri()
        self.size = page_size or self.page_size
        self.number = page
        if page is not None:
            self.page = offset_page(queryset, ordering, page=page, size=self.size)
            if not self.page.rows and page > 1:
                raise NotFound(f"Page {page} is past the end of the results.")
            # On the last page the count is known without a query.
            seen_all = (page - 1) * self.size + len(self.page.rows)
            known = seen_all if not self.page.has_next else self.page.total
        else:
            after, before = self.decode_cursor(cursor)
            self.page = keyset_page(queryset, ordering, size=self.size, after=after, before=before)
            alone = not self.page.has_next and not self.page.has_previous
            known = len(self.page.rows) if alone else self.page.total
        self.count = customer_count(
            queryset,
            count,
            exact_threshold=settings.CRM_EXACT_COUNT_THRESHOLD,
            known_total=known,
        )
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
def _signer(salt: str, key: str) -> signing.Signer:
    # A signer per salt and key, made once: signing.dumps() builds a new one
    # (and compresses a payload of a few dozen bytes) on every call, half the
    # cost of a link.
    return signing.Signer(key=key, salt=salt)


def cursor_token(ordering: Ordering, values: Sequence[Any], backwards: bool, *, salt: str) -> str:
    """A signed, opaque position: the key values of a boundary row, the ordering
    they belong to, and the direction to read from there."""
    return _signer(salt, settings.SECRET_KEY).sign_object(
        {"o": ordering.spec, "k": [key_to_json(v) for v in values], "b": int(backwards)}
    )


def cursor_position(token: str, ordering: Ordering, *, salt: str) -> tuple[list, bool]:
    """The inverse of :func:`cursor_token`: (key values, backwards), or :class:`InvalidCursor`."""
    try:
        payload = _signer(salt, settings.SECRET_KEY).unsign_object(token)
        issued_for, raw_values, backwards = payload["o"], payload["k"], bool(payload["b"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
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
