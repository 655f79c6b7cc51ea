"""How a page of the list is read, and how it is counted: one rule each, one :class:`Plan`.

A page of a filtered, ordered list can be found two ways, and each is a
cliff where the other is cheap:

* **walk** the ordering's index and test each customer until the page is
  full: cheap when matches are many and spread along the ordering (at 3% of
  customers a 50-row page walks about 1,700), ruinous when they are few or
  all at the far end (the customers who signed up before 2018, ordered
  newest first, come after two million others);
* **sort**: read the matches through the filters' own indexes and sort
  them: cheap when few match, ruinous when many do.

The rule (:func:`walk_budget`): a sort's cost can be told in advance from
the planning sample's estimate (:class:`Estimate`); so the walk is given a
budget of index entries worth that cost (what it spends before it falls
back counted in), and the page statement walks at most that far and sorts
the matches if the walk came up short (see
:mod:`core.customers.page_statement`). A walk that the sample expects to need
more than its budget is not tried at all. Whatever the data, a page costs
at most about twice the cheaper of the two.

:func:`plan` makes every choice for one page, the count's included, and
returns them as one immutable :class:`Plan`: the page statement is written
from it and asks nothing back. The numbers the rules weigh are
:mod:`core.customers.tunables`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Q

from crm.replicas import read_alias

from .ordering import READ_TOGETHER, Ordering
from .sample import ListSample, samples
from .search import RankBand
from .selectors import Condition, CustomerQuery
from .statements import Param
from .tunables import (
    COUNT_MARGIN,
    EXACT_COUNT_BUDGET_US,
    INDEX_ENTRY_US,
    SCATTERED_ROW_US,
    SEQUENTIAL_ROW_US,
    SORT_ROW_US,
)


@dataclass(frozen=True)
class Estimate:
    """What the planning sample expects of a list query (see
    :mod:`core.customers.sample`): customers in the table; customers that
    match; how many a sort reads to find them (those the indexes of the
    filters it reads through all find, or every customer where no filter
    has an index or a scan costs less), and how closely those rows follow
    the table's own order (1: a scan, or a range of the sign-up time; 0:
    scattered).
    """

    rows: int
    matches: int
    reads: int
    follows: float = 0.0
    #: Index entries a sort reads before any row: those of every filter whose
    #: index it intersects (bitmaps ANDed); none for a scan.
    entries: int = 0


def row_us(follows: float) -> float:
    """What reading a row costs where the rows read follow the table's own
    order this closely (0 to 1, the rank correlation; between the two costs
    by its square, as walks of bench_plans' indexes measured)."""
    return SEQUENTIAL_ROW_US + (SCATTERED_ROW_US - SEQUENTIAL_ROW_US) * (1 - follows**2)


def index_reads_pay(entries: int, reads: int, rows: int, follows: float) -> bool:
    """Is finding ``reads`` customers through indexes (their ``entries``)
    cheaper than reading all ``rows`` in a sequential scan?"""
    return read_us(entries, reads, follows) < rows * SEQUENTIAL_ROW_US


def read_us(entries: int, reads: int, follows: float) -> float:
    """What finding rows through indexes costs: their ``entries``, then the
    ``reads`` rows all of them find."""
    return entries * INDEX_ENTRY_US + reads * row_us(follows)


def sort_us(estimate: Estimate) -> float:
    """What reading and sorting the matches costs."""
    read = read_us(estimate.entries, estimate.reads, estimate.follows)
    return read + estimate.matches * SORT_ROW_US


def walk_budget(estimate: Estimate, expected: float, needed: int, follows: float) -> int:
    """Index entries a walk may read to find ``needed`` matches (the page, its
    offset and the row that says another page follows) before sorting the
    matches would have been cheaper; 0: sort them at once, where the walk is
    ``expected`` (by the sample walked the same way, see
    :meth:`core.customers.sample.ListSample.walk`) to need more than that.
    ``follows``: how closely the walked index's field follows the rows.

    A walk that comes up short has spent, before the sort it falls back to,
    its budget of rows and as many index entries again: the page statement
    learns that the index went on past the budget by reading the entry the
    budget ends at (:data:`~core.customers.page_statement.WALK_OR_SORT`; an
    index-only read: 49 ms for a million entries of the sign-up index at 3M,
    beside 140 ms for the walk of them). Both count against the budget, so
    that a page that falls back costs at most twice the sort.
    """
    budget = math.floor(sort_us(estimate) / (row_us(follows) + INDEX_ENTRY_US))
    return budget if needed <= budget and expected <= budget else 0


def estimate(
    sample: ListSample, conditions: Sequence[Condition], sampled: dict[int, np.ndarray]
) -> tuple[Estimate, list[Condition]]:
    """What the sample expects of ``conditions`` (each one's sampled rows in
    ``sampled``, by ``id``): the customers that meet them all, and the
    cheapest way for a sort to read them, with the conditions it reads
    through (returned; none for a scan of every customer, where no condition
    has an index or the scan costs less).

    The narrowest indexed condition first; each next narrowest joins it
    while intersecting their indexes' entries (bitmaps ANDed) costs less
    than the rows it spares: two filters of 90,000 customers each that 2,700
    meet are 180,000 entries and 2,700 rows (20 ms at 3M), not 90,000 rows
    (80 ms). A pair one index holds together counts as one, and so do a
    range's two bounds (one scan between them).
    """
    matches = sample.everyone()
    for condition in conditions:
        matches &= sampled[id(condition)]
    expected = min([sample.scaled(matches), *(c.at_most for c in conditions if c.at_most)])
    # A column's conditions are one way: both bounds of a range (created_from
    # and created_to) are one scan of its index between them, not the
    # narrower bound's scan with the other bound tested on each row.
    by_column: dict[str, list[Condition]] = {}
    ways = []
    for c in conditions:
        if c.indexed and c.column:
            by_column.setdefault(c.column, []).append(c)
        elif c.indexed:
            ways.append([c])
    ways += by_column.values()
    ways += [by_column[a] + by_column[b] for a, b in READ_TOGETHER if {a, b} <= set(by_column)]

    def found(way: list[Condition]) -> int:
        count = sample.scaled(np.logical_and.reduce([sampled[id(c)] for c in way]))
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
        cost = read_us(candidate_entries, candidate_reads, candidate_follows)
        if cost >= best:
            break
        access, best = candidate, cost
        entries, reads, follows = candidate_entries, candidate_reads, candidate_follows
    if not access or not index_reads_pay(entries, reads, sample.rows, follows):
        return Estimate(sample.rows, expected, sample.rows, follows=1.0), []
    chosen = [c for way in access for c in way]
    return Estimate(sample.rows, expected, reads, follows, entries), chosen


# -- counts --------------------------------------------------------------------

NONE, BOUNDED, EXACT, SAMPLED = "none", "bounded", "exact", "sampled"


def exact_count_threshold() -> int:
    """Up to this many matches a count is exact (``CRM_EXACT_COUNT_THRESHOLD``)."""
    return settings.CRM_EXACT_COUNT_THRESHOLD


def count_plan(estimate: Estimate, mode: str, threshold: int) -> str:
    """How the page's count is made, for ``?count=`` ``mode`` (``exact``,
    ``estimated`` or ``none``):

    * ``none``: no count;
    * ``exact``: ``COUNT(*)`` of every match;
    * ``sampled``: the sample's estimate, no SQL (many matches, or a count
      that would cost more than :data:`EXACT_COUNT_BUDGET_US`);
    * ``bounded``: counted up to ``threshold + 1``: exact below it, and the
      estimate (at least the threshold) above (:func:`bounded_count`).
    """
    if mode in (NONE, EXACT):
        return mode
    if estimate.matches > threshold * COUNT_MARGIN or sort_us(estimate) > EXACT_COUNT_BUDGET_US:
        return SAMPLED
    return BOUNDED


def bounded_count(counted: int, estimated: int, threshold: int) -> tuple[int, bool]:
    """A count that stopped just past ``threshold`` (at ``counted``), as the
    API and the admin say it: exact up to the threshold, else the estimate,
    which is then at least past it. Returns (count, is it an estimate)."""
    if counted <= threshold:
        return counted, False
    return max(threshold + 1, estimated), True


# -- one page's plan ---------------------------------------------------------------

#: A walk's budget that is no limit: every entry of the index if need be.
WALK_AS_FAR_AS_IT_TAKES = 2**62


@dataclass(frozen=True)
class PagePosition:
    """Where a page lies: ``limit`` rows after ``offset`` others, after (or,
    ``reverse``, before) the cursor's key values ``boundary``."""

    offset: int
    limit: int
    boundary: tuple[Any, ...] | None = None
    reverse: bool = False


@dataclass(frozen=True)
class Plan:
    """Everything the page statement needs, decided: which conditions a sort
    reads its matches through (``access``) and which it tests on each row
    (``tests``); where a walk of the ordering's index starts (``start``) and
    how many entries it may read (``budget``: 0 sorts at once); how the page
    is counted (``count``, one of :func:`count_plan`'s), and what the sample
    expects (``estimate``)."""

    ordering: Ordering
    access: Q
    tests: Q
    start: Q
    rank: Any
    exact_walk: bool
    position: PagePosition
    budget: int
    count: str
    estimate: Estimate
    threshold: int
    #: Where the search's rank orders the page: the matches by rank (each
    #: band's rank and condition, best first), the other conditions, and how
    #: many bands the sort reads first (all: no second try; see
    #: :func:`core.customers.page_statement.banded_matches`).
    bands: tuple[tuple[Any, Q], ...] | None
    others: Q
    bands_first: int

    @property
    def condition(self) -> Q:
        return self.access & self.tests


def plan(
    query: CustomerQuery, position: PagePosition, count: str, *, forced: str | None = None
) -> Plan:
    """The plan of one page of ``query``, chosen from the planning sample.

    ``forced`` ("walk" or "sort") overrides the choice: what bench_matrix
    times the choice against. A list that filters nothing is always walked,
    however deep: its ids come from the index alone."""
    sample = samples.get(read_alias())
    conditions = [*query.conditions, *query.bounds]
    sampled = {id(c): c.test(sample) for c in conditions}
    expected, access_conditions = estimate(sample, query.conditions, sampled)
    access, tests, start = Q(), Q(), Q()
    for condition in query.conditions:
        if any(condition is way for way in access_conditions):
            access &= condition.q
        else:
            tests &= condition.q
    for bound in query.bounds:
        start &= bound.q
    searched = [c for c in query.conditions if c.bands] if query.rank is not None else []
    bands, others, others_sampled = (), Q(), sample.everyone()
    if searched:
        bands = searched[0].bands
        for condition in query.conditions:
            if condition is not searched[0]:
                others &= condition.q
                others_sampled &= sampled[id(condition)]
    threshold = exact_count_threshold()
    counted = count_plan(expected, count, threshold)
    return Plan(
        ordering=query.ordering,
        access=access,
        tests=tests,
        start=start,
        rank=query.rank,
        exact_walk=query.exact_walk,
        position=position,
        budget=_budget(query, sample, sampled, expected, position, forced),
        count=counted,
        estimate=expected,
        threshold=threshold,
        bands=tuple((Param(band.score), band.condition) for band in bands) or None,
        others=others,
        bands_first=bands_first(bands, sample, others_sampled, position, counted),
    )


def bands_first(
    bands: Sequence[RankBand],
    sample: ListSample,
    others: np.ndarray,
    position: PagePosition,
    count: str,
) -> int:
    """How many of a search's bands (best first) the sort of a page reads
    first: those the sample expects to hold the page's rows (and those
    before it, after the cursor), counting ``others``' matches only.

    Every customer of a band ranks before every customer of a band ranked
    lower (the bands of one rank are read together), so if
    the bands read first hold that many rows, the page is theirs; if not (the
    sample erred high), the statement reads every band after all, and what
    it read first was fewer rows than a page. All of them where the sort
    counts the matches (a first page's bounded or exact count reads every
    match) or reads backwards.
    """
    if (count in (BOUNDED, EXACT) and position.boundary is None) or position.reverse:
        return len(bands)
    needed = position.offset + position.limit
    after = position.boundary[0] if position.boundary is not None else math.inf
    expected = 0
    for read, band in enumerate(bands, 1):
        if band.score > after:
            continue  # before the cursor: not read at all
        expected += sample.scaled(band.sample_test(sample) & others)
        if expected >= needed:
            return whole_ranks(bands, read)
    return len(bands)


def whole_ranks(bands: Sequence[RankBand], read: int) -> int:
    """``read`` bands, and those after them of the same rank: a band's
    customers and the next's tie where both rank the same (a first name's
    band and a last name's), and the ids decide between them."""
    while 0 < read < len(bands) and bands[read].score == bands[read - 1].score:
        read += 1
    return read


def _budget(
    query: CustomerQuery,
    sample: ListSample,
    sampled: dict[int, np.ndarray],
    expected: Estimate,
    position: PagePosition,
    forced: str | None,
) -> int:
    """How many entries of the ordering's index a walk may read before the
    page statement sorts the matches instead (0: sort at once)."""
    if not query.conditions or forced == "walk":
        return WALK_AS_FAR_AS_IT_TAKES
    if forced == "sort" or not query.ordering.indexed:
        return 0
    if query.exact_walk:
        return WALK_AS_FAR_AS_IT_TAKES  # every entry it reads is a match
    walked = walk_entries(query, position, sample, sampled)
    needed = position.offset + position.limit
    return walk_budget(expected, walked, needed, sample.follows(query.ordering.keys[0].column))


def walk_entries(
    query: CustomerQuery,
    position: PagePosition,
    sample: ListSample,
    sampled: dict[int, np.ndarray],
) -> float:
    """How many entries of the ordering's index a walk reads to find the
    page's matches (and those before it), as the sample walked the same way
    says (see :meth:`ListSample.walk`)."""
    matched, within = sample.everyone(), sample.everyone()
    for condition in query.conditions:
        matched &= sampled[id(condition)]
    for bound in query.bounds:
        within &= sampled[id(bound)]
    keys = []
    for key in query.ordering.keys:
        if key.column not in sample.columns:
            break  # later keys order only within the ties of this one
        keys.append((key.column, key.descending != position.reverse))
    after = None if position.boundary is None else position.boundary[: len(keys)]
    return sample.walk(keys, matched, within, after, position.offset + position.limit)
