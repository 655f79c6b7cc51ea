"""Pages of the customer list: the page statement, cursors, links and counts.

One module owns the paging protocol. :class:`CustomerPagination` is what a
view uses, in the shape of DRF's own ``CursorPagination``: configuration as
commented attributes, and one small hook per step (``decode_cursor``,
``encode_cursor``, ``get_next_link``, ``get_previous_link``,
``get_paginated_response``). Underneath, :func:`keyset_page` and
:func:`offset_page` fetch a page and its count: the page's position goes to
:func:`core.customers.plans.plan`, whose :class:`~core.customers.plans.Plan`
becomes one statement (:func:`core.customers.page_statement.page_statement`);
cursors are sealed and opened by :mod:`core.customers.cursors`. Each step
hands the next what it needs, and none calls back.

Why not DRF's ``CursorPagination``: its cursor is an offset from the nearest
unique position of a *single* ordering field and it pages through
``queryset.filter(field__gt=…)``; ours seeks on the whole key (several
fields plus a tie-breaker, mixed directions) with one row comparison that a
``(field, id)`` b-tree answers as an index condition (see
:mod:`core.customers.ordering`), and it counts by an estimate where DRF's
``PageNumberPagination`` runs ``COUNT(*)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models import F
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from crm.replicas import read_alias

from . import plans
from .columns import ROW
from .cursors import InvalidCursor, cursor_position, cursor_token
from .ordering import Ordering, SortKey
from .page_statement import page_statement
from .plans import BOUNDED, NONE, PagePosition, Plan
from .selectors import CustomerQuery
from .tunables import DEFAULT_PAGE_SIZE

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
    query: CustomerQuery,
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
    position = PagePosition(0, size + 1, None if boundary is None else tuple(boundary), reverse)
    rows, total = read_page(plans.plan(query, position, count))
    more = len(rows) > size
    rows = rows[:size]
    if reverse:
        rows.reverse()
        return Page(rows, has_next=True, has_previous=more, count=total)
    if boundary is None and not more:
        total = Count(len(rows), False) if count != NONE else total  # every match is here
    return Page(rows, has_next=more, has_previous=after is not None, count=total)


def offset_page(query: CustomerQuery, *, page: int, size: int, count: str = "estimated") -> Page:
    """Page ``page`` (1-based) by OFFSET, for clients that number their pages.

    The deeper the page, the more index entries PostgreSQL skips (see
    :func:`read_page`): cursors do not.
    """
    offset = (page - 1) * size
    rows, total = read_page(plans.plan(query, PagePosition(offset, size + 1), count))
    more = len(rows) > size
    if not more and rows and count != NONE:
        total = Count(offset + len(rows), False)  # the last page: every match seen
    return Page(rows[:size], has_next=more, has_previous=page > 1, count=total)


def read_page(plan: Plan) -> tuple[list[tuple], Count]:
    """The rows of the plan's position, and the count: one statement (see
    :func:`page_statement`)."""
    sql, params = page_statement(plan)
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    rows = [row[:-1] for row in found]
    total = found[0][-1] if found else None
    position = plan.position
    if plan.count == NONE:
        return rows, Count(None, False)
    if total is None and not found and position.boundary is None and position.offset == 0:
        return rows, Count(0, False)  # nothing matches
    if total is None:
        return rows, Count(plan.estimate.matches, True)
    if plan.count == BOUNDED:
        return rows, Count(*plans.bounded_count(total, plan.estimate.matches, plan.threshold))
    return rows, Count(total, False)


# -- the paginator -------------------------------------------------------------


class CustomerPagination:
    """Pages of the customer list, by cursor (the default) or by page number.

    Without ``page``, a client follows ``next`` and ``previous``: encrypted,
    opaque cursors holding the sort key of a boundary row, so that page 50,000
    costs what page 1 costs. With ``page=N`` it gets numbered pages (and
    ``page``, ``page_size``, ``num_pages`` in the body), for clients that
    need them; the deeper the page, the more index entries PostgreSQL skips.
    """

    #: Rows per page when the client does not say (``page_size``; the most
    #: it may ask for is core.customers.tunables.MAX_PAGE_SIZE).
    page_size = DEFAULT_PAGE_SIZE
    #: The query parameter of cursor mode.
    cursor_query_param = "cursor"
    #: The query parameter of page-number mode.
    page_query_param = "page"
    #: Derives the cursors' own key from the secret key, so that no other
    #: value this project seals or signs can pass for a cursor.
    cursor_salt = "core.customers.cursor"

    def paginate(
        self,
        query: CustomerQuery,
        request: Request,
        *,
        page_size: int | None = None,
        page: int | None = None,
        cursor: str | None = None,
        count: str = "estimated",
    ) -> list[tuple]:
        """Fetch the page the request asks for and its count, and remember what
        the links need."""
        self.request, self.ordering = request, query.ordering
        self.url = request.build_absolute_uri()
        self.size = page_size or self.page_size
        self.number = page
        if page is not None:
            self.page = offset_page(query, page=page, size=self.size, count=count)
            if not self.page.rows and page > 1:
                raise NotFound(f"Page {page} is past the end of the results.")
        else:
            after, before = self.decode_cursor(cursor)
            self.page = keyset_page(query, size=self.size, after=after, before=before, count=count)
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


# -- events of the history -------------------------------------------------------


class EventPagination:
    """Pages of a customer's history, newest first, by cursor: a page's last
    event's id, sealed like the list's cursors (:mod:`core.customers.cursors`)."""

    #: Events per page when the client does not say (``page_size``).
    page_size = DEFAULT_PAGE_SIZE
    #: The query parameter of a cursor.
    cursor_query_param = "cursor"
    #: The cursors' own key (see CustomerPagination.cursor_salt).
    cursor_salt = "core.history.cursor"
    #: Newest first: the event's id, descending.
    ordering = Ordering(("-id",), (SortKey("id", F("id"), True, "int"),))

    def decode_cursor(self, token: str | None) -> int | None:
        """The id the page starts below, or a 400 naming the cursor."""
        if token is None:
            return None
        try:
            values, _ = cursor_position(token, self.ordering, salt=self.cursor_salt)
        except InvalidCursor as exc:
            raise ValidationError({self.cursor_query_param: [str(exc)]}) from None
        return values[0]

    def get_paginated_response(
        self, request: Request, events: list[dict[str, Any]], size: int
    ) -> Response:
        """``events`` read one past ``size``: the page and a link to the next."""
        page, more = events[:size], len(events) > size
        next_link = None
        if more:
            token = cursor_token(self.ordering, [page[-1]["id"]], False, salt=self.cursor_salt)
            url = request.build_absolute_uri()
            next_link = replace_query_param(url, self.cursor_query_param, token)
        results = [{key: value for key, value in e.items() if key != "id"} for e in page]
        return Response({"next": next_link, "results": results})
