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
:mod:`core.customers.page_statement`). A walk that the sample expects to need
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

    @property
    def filtered(self) -> bool:
        return self.matches < self.rows or self.reads < self.rows


# The tunable numbers of the list's choices, each beside what set it. The
# costs are microseconds per row, measured at 3,000,000 customers on the
# embedded PostgreSQL 18 by `manage.py bench_plans` (the published run is
# docs/benchmarks/plans/, and a test holds these to it); only their ratios
# matter.

#: Reading one row out of the table's order, and testing it: a walk of an
#: index whose field is scattered over the table (a name, the points), or a
#: customer found through such a filter's index.
SCATTERED_ROW_US = 0.75
#: Reading one row in the table's order: a sequential scan, or a walk of an
#: index whose field follows the rows (the id, the sign-up time).
SEQUENTIAL_ROW_US = 0.10
#: Putting one entry of a filter's index in a bitmap, to intersect it with
#: another filter's before reading any row.
INDEX_ENTRY_US = 0.045
#: Sorting one match by a key no index holds (a top-N heap sort), above reading it.
SORT_ROW_US = 0.045

#: Rows of the planning sample each process holds (core.customers.sample):
#: about 11 MB of arrays (NumPy's text is fixed-width: a column's longest
#: value sets its width), more once a text filter's upper-cased copy is
#: made. One sampled row stands for 150 customers at 3M and 500 at 10M, so
#: a count of 10,000 matches is read off about 70 (or 20) sampled rows:
#: within 25% (or 45%) nine times in ten, which is what a choice between
#: two plans and a count that says "about" need (a test checks it).
SAMPLE_SIZE = 20_000
#: How old a sample may get before it is read again, in the background: a
#: few minutes, so that a load or a day's writes show soon, while reading it
#: (20,000 look-ups by primary key, about 0.1 s) stays a negligible share of
#: a worker's time.
SAMPLE_SECONDS = 300

#: A text filter's look-up among the known values stops past this many (see
#: core.customers.known): more than that many names contain the text ("a",
#: "e"), which then matches most customers and is tested on each row a plan
#: reads instead; an IN list of thousands costs more to plan and to probe
#: than it saves.
MAX_VALUES = 500
#: The shortest word of a phone substring that its trigram index is asked
#: for alone (core.customers.filters.indexed_piece): three trigrams of its
#: own; the short words of "+49 30 …" yield trigrams most numbers share.
INDEXED_PIECE_LENGTH = 5


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
    """
    budget = math.floor(sort_us(estimate) / row_us(follows))
    return budget if needed <= budget and expected <= budget else 0


# -- counts --------------------------------------------------------------------

#: Estimates up to this many times the exact-count threshold are checked by a
#: count that stops just past the threshold: a count under the threshold must
#: be exact, and a sampled estimate is within 2x of the truth near it (see
#: core.customers.sample) for nine combinations in ten.
COUNT_MARGIN = 2
#: A count under the threshold is skipped (the estimate stands, and says so)
#: where reading the matches would cost more than this (µs, as priced by
#: :func:`sort_us`): about what a page costs. It admits a count of any rare
#: filter's matches through its index (3,000 customers: 2 ms). An exact count
#: of 17,019 customers born since 1980 with "2 4" in their phone number
#: reads every customer (190 ms at 3M), and one of the 4,103 Germans with
#: 5,000 points or more reads the 26,725 customers with that many points
#: (38 ms): cliffs their pages (walks of 32 and 1 ms) do not have.
EXACT_COUNT_BUDGET_US = 10_000

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
