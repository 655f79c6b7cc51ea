"""Reads of customers: the one place that builds the customer list query.

The API, the admin, the export and the benchmarks all start from
:func:`customer_list`, so a filter, an ordering or a search means the same
SQL everywhere; :mod:`core.customers.pagination` pages it and counts it.

Every read is of one table, the read table ``core_customer_list``
(:class:`core.models.CustomerRow`): a customer with their address and
loyalty record in one row, so that every filter and every ordering has an
index on that one table, and PostgreSQL's statistics describe the rows the
list reads. What remains to choose, walking the ordering's index or sorting
the matches, is chosen per page from the planning sample's estimate
(:mod:`core.customers.plans`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db.models import BooleanField, ExpressionWrapper, Func, Q, QuerySet
from django.db.models.lookups import GreaterThanOrEqual

from core.models import AppUser, CustomerRow
from crm.replicas import read_alias

from . import plans
from .columns import customer_rows, row_expressions
from .filters import CustomerFilter, KnownValueSubstring
from .known import Containing, Similar, look_up
from .ordering import Ordering, customer_ordering
from .plans import Estimate
from .sample import ListSample, instant_number, sampled_value, samples
from .search import SearchMatch, search_words
from .statements import Param, number_params, shape_of

#: Lower bounds that the tables' constraints carry from a filter over to a
#: sortable field: nobody is updated before being created
#: (``appuser_updated_since_created``), and a loyalty record is created after
#: its customer and active since then (``relationship_created_after_customer``,
#: ``relationship_active_since_created``). A walk of such a field starts at
#: the bound instead of testing every customer before it: with
#: ``created_from`` two months ago, ordered by ``last_updated``, the 97% of
#: customers last updated before then.
IMPLIED_BOUNDS = {"created_from": ("last_updated", "relationship__last_activity")}


@dataclass(frozen=True)
class Condition:
    """One filter (or the search) of a list query: its SQL, which sampled rows
    meet it, and whether an index finds the customers that do."""

    q: Q
    sampled: np.ndarray
    indexed: bool
    #: The read-table column it bounds (None: several, or none).
    column: str | None = None
    #: At most this many customers meet it whatever the sample says (an id).
    at_most: int | None = None
    #: It holds its column to one value.
    single: bool = False


@dataclass(frozen=True)
class CustomerList:
    """A list query: which customers, in which order, where a walk of the
    ordering's index may start (``start``), and what the planning sample
    expects of them (``estimate``).

    Its conditions come in two parts: ``access``, the narrowest indexed one,
    through whose index a sort reads its matches; and ``tests``, the others,
    tested on each row read (PostgreSQL would rather intersect the bitmaps
    of every index it can use: 471,403 Germans for the 4,103 of them among
    26,725 customers with 5,000 points or more, 28 ms of a 51 ms sort).
    What :mod:`core.customers.page_statement` needs to write the page statement,
    and nothing it has to guess.
    """

    access: Q
    tests: Q
    ordering: Ordering
    estimate: Estimate
    search: SearchMatch | None = None
    start: Q = field(default_factory=Q)
    #: The sample, its rows that match, and those within the walk's bounds.
    sample: ListSample | None = None
    sampled: np.ndarray | None = None
    within: np.ndarray | None = None
    #: Every condition bounds the walk (``start``): a walk reads only matches.
    exact_walk: bool = False
    #: The values of its conditions by slot, and what its statements share
    #: with those of other lists (see :mod:`core.customers.statements`).
    values: dict = field(default_factory=dict)
    shape: Any = None

    def walk_follows(self) -> float:
        """How closely the ordering's first field follows the table's own order."""
        return self.sample.follows(self.ordering.keys[0].column)

    def walk_entries(self, needed: int, after: Any, reverse: bool) -> float:
        """How many entries of the ordering's index a walk reads to find
        ``needed`` matches after the cursor key ``after``, as the sample
        walked the same way says (see :meth:`ListSample.walk`)."""
        lead = self.ordering.keys[0]
        return self.sample.walk(
            lead.column,
            lead.descending != reverse,
            self.sampled,
            self.within,
            None if after is None else sampled_value(after[0]),
            needed,
        )

    @property
    def condition(self) -> Q:
        return self.access & self.tests

    def rows(self) -> QuerySet:
        """Every row of the read table (with the search's rank, where it orders them)."""
        rows = CustomerRow.objects.all()
        if self.search is not None and not self.ordering.indexed:
            return self.search.ranked(rows)
        return rows

    def matches(self, *, ranked: bool = True) -> QuerySet:
        """The matching rows, unordered: found through ``access``'s index (and
        without the search's rank where nothing orders them: a count)."""
        rows = self.rows() if ranked else CustomerRow.objects.all()
        return rows.filter(self.access, tested(self.tests))


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


def customer_list(
    *,
    filters: Mapping[str, Any] | None = None,
    ordering: Ordering | None = None,
    search: str | None = None,
) -> CustomerList:
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
        filters[name] = values_found if len(values_found) <= plans.MAX_VALUES else text
    match = SearchMatch.of(words, found[len(texts) :]) if search else None
    sample = samples.get(read_alias())
    conditions = [filter_condition(sample, name, value) for name, value in filters.items()]
    if match is not None:
        conditions.append(Condition(match.condition, match.sample_test(sample), True))
    lead = ordering.keys[0]
    if ordering.by_record:
        # A customer without a loyalty record has no place in this order. The
        # record's columns are NULL exactly then: ordered by one of them, its
        # index skips them (a bound of the walk), else each row is tested.
        column = lead.column if lead.column in RECORD_COLUMNS else "relationship_created"
        present = Q(**{f"{column}__isnull": False})
        conditions.append(
            Condition(present, sample.present("points"), column in RECORD_COLUMNS, column)
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
                    sample.compare(lead.column, "gte", instant_number(instant)),
                    True,
                )
            )
    # Every condition a bound: the walk's range of the index is the matches.
    exact_walk = match is None and all(any(c is b for b in bounds) for c in conditions)
    expected, access = estimate(sample, conditions)
    read, tests, start = Q(), Q(), Q()
    matched, within = sample.everyone(), sample.everyone()
    for condition in conditions:
        matched &= condition.sampled
        if any(condition is way for way in access):
            read &= condition.q
        else:
            tests &= condition.q
    for bound in bounds:
        start &= bound.q
        within &= bound.sampled
    rank = match.rank if match is not None and not ordering.indexed else None
    return CustomerList(
        read,
        tests,
        ordering,
        expected,
        match,
        start,
        sample,
        matched,
        within,
        exact_walk=exact_walk,
        values=number_params(read, tests, start, rank),
        shape=shape_of(read, tests, start, rank, ordering, exact_walk),
    )


def filter_condition(sample: ListSample, name: str, value: Any) -> Condition:
    """The filter ``name=value`` as a :class:`Condition` (``value`` as cleaned,
    a text filter's as looked up)."""
    # What FilterSet.filter_queryset does, without instantiating a FilterSet
    # (it deep-copies every filter: a millisecond per request).
    spec = CustomerFilter.base_filters[name]
    column = "birthday_key" if spec.field_name == "birthday" else spec.field_name
    return Condition(
        spec.condition(value),
        spec.sample_test(sample, value),
        spec.indexed(value),
        column,
        1 if spec.field_name in ("id", "customer_id") else None,
        single=isinstance(value, list) and len(value) == 1,
    )


#: The loyalty record's columns that are NOT NULL in core_customerrelationship:
#: NULL in the read table exactly for a customer without a record.
RECORD_COLUMNS = ("points", "last_activity")

#: Filter columns one b-tree of the read table holds together, first and
#: second (core.models.CustomerRow): both conditions are read through it at
#: once (``country = 'United States' AND city IN (…)`` finds the 0 customers
#: of both in the (country, city, id) index, where either alone reads
#: tens of thousands).
READ_TOGETHER = (("country", "city"), ("last_name", "first_name"), ("first_name", "last_name"))


def estimate(sample: ListSample, conditions: list[Condition]) -> tuple[Estimate, list[Condition]]:
    """What the sample expects of ``conditions``: the customers that meet them
    all, and the cheapest way for a sort to read them, with the conditions
    it reads through (returned; none for a scan of every customer, where no
    condition has an index or the scan costs less).

    The narrowest indexed condition first; each next narrowest joins it
    while intersecting their indexes' entries (bitmaps ANDed) costs less
    than the rows it spares: two filters of 90,000 customers each that 2,700
    meet are 180,000 entries and 2,700 rows (20 ms at 3M), not 90,000 rows
    (80 ms). A pair one index holds together counts as one.
    """
    matches = sample.everyone()
    for condition in conditions:
        matches &= condition.sampled
    expected = min([sample.scaled(matches), *(c.at_most for c in conditions if c.at_most)])
    by_column = {c.column: c for c in conditions if c.indexed and c.column}
    ways = [[c] for c in conditions if c.indexed]
    ways += [[by_column[a], by_column[b]] for a, b in READ_TOGETHER if {a, b} <= set(by_column)]

    def found(way: list[Condition]) -> int:
        count = sample.scaled(np.logical_and.reduce([c.sampled for c in way]))
        return min([count, *(c.at_most for c in way if c.at_most is not None)])

    ways.sort(key=found)
    access: list[list[Condition]] = []
    best, entries, reads, follows = math.inf, 0, sample.rows, 1.0
    for way in ways:
        candidate = [*access, way]
        together = [c for w in candidate for c in w]
        candidate_reads = found(together)
        candidate_entries = sum(found(w) for w in candidate) if len(candidate) > 1 else 0
        lead = candidate[0][0].column
        candidate_follows = sample.follows(lead) if lead else 0.0
        cost = plans.read_us(candidate_entries, candidate_reads, candidate_follows)
        if cost >= best:
            break
        access, best = candidate, cost
        entries, reads, follows = candidate_entries, candidate_reads, candidate_follows
    if not access or not plans.index_reads_pay(entries, reads, sample.rows, follows):
        return Estimate(sample.rows, expected, sample.rows, follows=1.0), []
    chosen = [c for way in access for c in way]
    return Estimate(sample.rows, expected, reads, follows, entries), chosen


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
