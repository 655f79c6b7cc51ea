"""The matrix benchmark: filters x orderings x page positions, made from the data.

``bench_list`` times a dozen hand-picked scenarios; a user combines the list's
parameters in thousands of ways, and the slow ones are the ones nobody
picked. This module makes the combinations itself:

* **values from the data** (:func:`profile_data`): every filter of
  :class:`core.customers.filters.CustomerFilter` at three selectivities read
  off the database (*rare*: at least one but under 0.1% of customers;
  *medium*: 1-5%; *common*: over 20%). A filter whose data has no value in a
  band (no country holds under 0.1% of customers) lacks that band, and the
  report says so. ``search=`` words are customers' names, some with a typo.
* **orderings** from the grammar: the default, every sortable field in both
  directions, and two-field orderings in all four direction patterns
  (``address__city,-id``). An ordering the API refuses must be refused with
  a 400 that lists what is allowed; it is checked, not timed.
* **positions**: the first page, a cursor page 100 pages deep (or the last
  page, when there are fewer), and ``page=3`` (or the last page).
* **a deterministic sample** (:func:`sample_combinations`): each dimension is
  dealt from its own shuffled deck (``--seed``), so every filter, band,
  ordering and position appears about equally often, paired at random.

Every answer is checked (:func:`check_answer`): the status, the number of
rows against the true count, that each row meets each filter (in Python,
from the row's JSON; ``search=`` by an SQL predicate written here from the
documented semantics), that the rows are in order, and that the next page
neither overlaps this one nor goes back in the order. The true count comes
from a plain SQL ``COUNT(*)`` written here, independently of
:mod:`core.customers`, and is reported beside the API's count.

Timing: the combinations run in rounds (every combination once per round,
in a shuffled order), so that a burst of noise on the shared machine hits
many combinations a little rather than one combination a lot.
"""
