"""How a page of the list is read, and how it is counted: one rule each.

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
budget of index entries worth that cost, and the page statement walks at
most that far and sorts the matches if the walk came up short (see
:mod:`core.customers.pagination`). A walk that the sample expects to need
more than its budget is not tried at all. Whatever the data, a page costs
at most about twice the cheaper of the two.

Every tunable number is here, beside the measurement that set it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Estimate:
    """What the planning sample expects of a list query (see
    :mod:`core.customers.sample`): customers in the table; customers that
    match; and how many a sort reads to find them (those of the narrowest
    indexed filter, or every customer, ``scan``, where no filter has an
    index or reading through it would cost more than a scan).
    """

    rows: int
    matches: int
    reads: int
    scan: bool = False

    @property
    def filtered(self) -> bool:
        return self.matches < self.rows or self.reads < self.rows


# Costs in microseconds per row, measured at 3,000,000 customers on the
# embedded PostgreSQL 18 by `manage.py bench_plans` (which times each step
# over the loaded read table; the published run is docs/benchmarks/plans/,
# and a test holds these to it). Only their ratios matter.

#: A walk: one entry of the ordering's index, its row read and tested.
WALK_ENTRY_US = 0.47
#: A sort: one customer found through a filter's index (a bitmap heap scan), tested.
READ_ROW_US = 0.73
#: A sort with no indexed filter: one customer of a sequential scan, tested.
SCAN_ROW_US = 0.056
#: A sort: one match sorted (a top-N heap sort of its key).
SORT_ROW_US = 0.044


def index_reads_pay(reads: int, rows: int) -> bool:
    """Is reading ``reads`` customers through an index cheaper than reading
    all ``rows`` in a sequential scan?"""
    return reads * READ_ROW_US < rows * SCAN_ROW_US


def sort_us(estimate: Estimate) -> float:
    """What reading and sorting the matches costs."""
    read = estimate.rows * SCAN_ROW_US if estimate.scan else estimate.reads * READ_ROW_US
    return read + estimate.matches * SORT_ROW_US


def walk_budget(estimate: Estimate, expected: float, needed: int) -> int:
    """Index entries a walk may read to find ``needed`` matches (the page, its
    offset and the row that says another page follows) before sorting the
    matches would have been cheaper; 0: sort them at once, where the walk is
    ``expected`` (by the sample walked the same way, see
    :meth:`core.customers.sample.ListSample.walk`) to need more than that.
    """
    budget = math.floor(sort_us(estimate) / WALK_ENTRY_US)
    return budget if needed <= budget and expected <= budget else 0


# -- counts --------------------------------------------------------------------

#: Estimates up to this many times the exact-count threshold are checked by a
#: count that stops just past the threshold: a count under the threshold must
#: be exact, and a sampled estimate is within 2x of the truth near it (see
#: core.customers.sample) for nine combinations in ten.
COUNT_MARGIN = 2
#: A count under the threshold is skipped (the estimate stands, and says so)
#: where reading the matches would cost more than this (µs, as priced by
#: :func:`sort_us`): an exact count of 3,000 customers that reads every
#: customer's phone number to find "2 4" among the Austrians takes half a
#: second, a cliff the page itself does not have.
EXACT_COUNT_BUDGET_US = 200_000

NONE, BOUNDED, EXACT, ESTIMATE = "none", "bounded", "exact", "estimate"


def count_plan(estimate: Estimate, mode: str, threshold: int) -> str:
    """How the page's count is made, for ``?count=`` ``mode``:

    * ``none``: no count;
    * ``exact``: ``COUNT(*)`` of every match;
    * ``estimate``: the sample's estimate, no SQL (many matches, or a count
      that would cost more than :data:`EXACT_COUNT_BUDGET_US`);
    * ``bounded``: counted up to ``threshold + 1``: exact below it, and the
      estimate (at least the threshold) above.
    """
    if mode in (NONE, EXACT):
        return mode
    if estimate.matches > threshold * COUNT_MARGIN or sort_us(estimate) > EXACT_COUNT_BUDGET_US:
        return ESTIMATE
    return BOUNDED
