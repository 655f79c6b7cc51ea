"""Reads of customers: the one place that builds the customer list query.

The API, the export and the benchmarks start from :func:`customer_list`, so
that a filter, an ordering or a search means the same SQL everywhere. It
returns a :class:`CustomerQuery`: which customers (the conditions), in which
order, and nothing about how to read them. How a page is read, walking the
ordering's index or sorting the matches, is :mod:`core.customers.plans`'s
choice, made per page from the planning sample; the export reads every
match and asks for no plan.

Every read is of one table, the read table ``core_customer_list``
(:class:`core.models.CustomerRow`): a customer with their address and
loyalty record in one row, so that every filter and every ordering has an
index on that one table, and PostgreSQL's statistics describe the rows the
list reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from django.db.models import Q, QuerySet
from django.db.models.lookups import GreaterThanOrEqual

from core.models import AppUser, CustomerRow
from core.read_table import Filter, JoinKind, Sort, read_table

from . import tunables
from .columns import customer_rows, row_expressions
from .filters import CustomerFilter, KnownValueSubstring
from .known import Containing, Similar, look_up
from .ordering import READ_TOGETHER, Ordering, customer_ordering
from .sample import ListSample, instant_number
from .search import RankBand, SearchMatch, search_words
from .statements import Param

TABLE = read_table(CustomerRow)

#: Lower bounds that the tables' constraints carry from a filter over to a
#: sortable field: nobody is updated before being created
#: (``appuser_updated_since_created``), and a loyalty record is created after
#: its customer and active since then (``relationship_created_after_customer``,
#: ``relationship_active_since_created``). A walk of such a field starts at
#: the bound instead of testing every customer before it: with
#: ``created_from`` two months ago, ordered by ``last_updated``, the 97% of
#: customers last updated before then.
IMPLIED_BOUNDS = {"created_from": ("last_updated", "relationship__last_activity")}

#: The loyalty record's columns that its table holds NOT NULL: NULL in the
#: read table exactly for a customer without a record.
RECORD_COLUMNS = tuple(
    column.name
    for join in TABLE.joins
    if join.kind is JoinKind.ONE_TO_ONE
    for column in join.columns
    if not column.source.null
)


@dataclass(frozen=True)
class Condition:
    """One filter (or the search) of a list query: its SQL, which rows of the
    planning sample meet it (``test``, for the plans), and whether an index
    finds the customers that do."""

    q: Q
    test: Callable[[ListSample], np.ndarray]
    indexed: bool
    #: The read-table column it bounds (None: several, or none).
    column: str | None = None
    #: At most this many customers meet it whatever the sample says (an id).
    at_most: int | None = None
    #: It holds its column to one value.
    single: bool = False
    #: The search's matches by rank (see :meth:`SearchMatch.bands`).
    bands: tuple[RankBand, ...] | None = None


@dataclass(frozen=True)
class CustomerQuery:
    """Which customers, in which order: the conditions they meet, the
    ordering, the search (whose rank may order them), and the conditions
    that bound a walk of the ordering's index (``bounds``: a filter on its
    own field, or on the field an index holds before it)."""

    conditions: tuple[Condition, ...]
    ordering: Ordering
    search: SearchMatch | None = None
    bounds: tuple[Condition, ...] = ()
    #: Every condition bounds the walk: a walk reads only matches.
    exact_walk: bool = False

    @property
    def condition(self) -> Q:
        condition = Q()
        for c in self.conditions:
            condition &= c.q
        return condition

    @property
    def rank(self) -> Any:
        """The search's rank, where it orders the customers (no ordering given)."""
        if self.search is not None and not self.ordering.indexed:
            return self.search.rank
        return None

    def matches(self) -> QuerySet:
        """Every matching row, in the ordering: what the export streams."""
        rows = CustomerRow.objects.all()
        if self.rank is not None:
            rows = self.search.ranked(rows)
        return rows.filter(self.condition).order_by(*self.ordering.order_by())


def customer_list(
    *,
    filters: Mapping[str, Any] | None = None,
    ordering: Ordering | None = None,
    search: str | None = None,
) -> CustomerQuery:
    """Customers matching ``filters`` (already validated by :class:`CustomerFilter`)
    and ``search``, that have a place in ``ordering``.

    Not yet ordered or paged: see :mod:`core.customers.pagination`.
    """
    ordering = ordering or customer_ordering(None, searching=bool(search))
    # Every look-up among the known values (text filters, search words), in
    # one statement, before the page statement is written with what they found.
    texts = [
        (name, value)
        for name, value in (filters or {}).items()
        if isinstance(CustomerFilter.base_filters[name], KnownValueSubstring)
    ]
    words = search_words(search) if search else []
    found = look_up(
        [Containing(CustomerFilter.base_filters[name].field_name, text) for name, text in texts]
        + [Similar(word) for word in words]
    )
    filters = dict(filters or {})
    for (name, text), values in zip(texts, found, strict=False):
        values_found = values.get(CustomerFilter.base_filters[name].field_name, [])
        filters[name] = values_found if len(values_found) <= tunables.MAX_VALUES else text
    match = SearchMatch.of(words, found[len(texts) :]) if search else None
    conditions = [filter_condition(name, value) for name, value in filters.items()]
    if match is not None:
        conditions.append(Condition(match.condition, match.sample_test, True, bands=match.bands()))
    lead = ordering.keys[0]
    if ordering.by_record:
        # A customer without a loyalty record has no place in this order. The
        # record's columns are NULL exactly then: ordered by one of them, its
        # index skips them (a bound of the walk), else each row is tested.
        column = lead.column if lead.column in RECORD_COLUMNS else RECORD_COLUMNS[0]
        conditions.append(
            Condition(
                Q(**{f"{column}__isnull": False}),
                partial(ListSample.present, column=column),
                column == lead.column,
                column,
            )
        )
    # Where a walk of the ordering's index starts and stops: the filters on
    # its own column; a filter holding the column before it in one b-tree to
    # one value (country=united states ordered by city walks the (country,
    # city, id) index within the country: 51 rows, where a walk of every city
    # passed 800,000 customers of other countries first); and the bounds the
    # tables' constraints imply.
    bounds = [
        c
        for c in conditions
        if (c.column == lead.column and c.indexed)
        or (c.single and (c.column, lead.column) in READ_TOGETHER)
    ]
    for name, bounded in IMPLIED_BOUNDS.items():
        if name in filters and lead.name in bounded:
            instant, _ = filters[name]
            bounds.append(
                Condition(
                    Q(GreaterThanOrEqual(lead.expression, Param(instant))),
                    partial(
                        ListSample.compare,
                        column=lead.column,
                        lookup="gte",
                        value=instant_number(instant),
                    ),
                    True,
                )
            )
    # Every condition a bound: the walk's range of the index is the matches.
    exact_walk = match is None and all(any(c is b for b in bounds) for c in conditions)
    return CustomerQuery(tuple(conditions), ordering, match, tuple(bounds), exact_walk)


def filter_condition(name: str, value: Any) -> Condition:
    """The filter ``name=value`` as a :class:`Condition` (``value`` as cleaned,
    a text filter's as looked up)."""
    # What FilterSet.filter_queryset does, without instantiating a FilterSet
    # (it deep-copies every filter: a millisecond per request).
    spec = CustomerFilter.base_filters[name]
    column = TABLE.column(spec.field_name)
    return Condition(
        spec.condition(value),
        partial(spec.sample_test, value=value),
        spec.indexed(value),
        column.key,
        1 if column.listed.sort is Sort.UNIQUE and column.listed.filter is Filter.EXACT else None,
        single=isinstance(value, list) and len(value) == 1,
    )


def customer_detail(pk: int) -> dict[str, Any] | None:
    """One customer, exactly as the list shows them (their row of the read table)."""
    columns = row_expressions()
    row = CustomerRow.objects.filter(pk=pk).annotate(**columns).values_list(*columns).first()
    return customer_rows([row])[0] if row is not None else None


def customer_for_update(pk: int) -> AppUser | None:
    """The customer with their address and record loaded, as the write services take them.

    Not locked: the services write in their own transaction, and a write
    request reads the primary (see crm.replicas).
    """
    return AppUser.objects.select_related("address", "relationship").filter(pk=pk).first()
