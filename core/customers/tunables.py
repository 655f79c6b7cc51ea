"""Every number that steers the list's plans, counts and limits, beside what set it.

One module, so that a reader can see at once what the list assumes, and so
that none of these hides in the code that uses it. Each number has a test in
``core/tests/customers/test_tunables.py`` that fails when it is off by 2x
either way: a cost against its published measurement, a size against the
requirement it is the smallest (or largest) to meet. The exact-count
threshold is the operator's (``CRM_EXACT_COUNT_THRESHOLD``, a setting), read
by :func:`core.customers.plans.exact_count_threshold` only.
"""

from __future__ import annotations

# -- costs --------------------------------------------------------------------
# Microseconds per row, measured at 3,000,000 customers on the embedded
# PostgreSQL 18 by `manage.py bench_plans` (the published runs are in
# docs/benchmarks/plans/). Their ratios price a sort against a walk; the
# scattered row's own size prices a count (EXACT_COUNT_BUDGET_US). Set on
# 2026-12-04 (plans.2.csv: 0.73-0.81, 0.10, 0.045, 0.046); the 2026-12-06 runs
# (plans.csv), on a machine 1.5-2x slower at plain Python, measured 1.16-1.48,
# 0.30-0.35, 0.072-0.082 and 0.065-0.121: every ratio to the scattered row
# within 1.7x of these, which a test holds within 2x.

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

# -- the planning sample ---------------------------------------------------------

#: Rows of the planning sample each process holds (core.customers.sample):
#: the smallest sample that estimates a count of 10,000 (the exact-count
#: threshold's default) within 25% nine times in ten at 3M customers, which
#: is what a choice between two plans and a count that says "about" need.
#: Its memory per process, measured at 3M (ListSample's arrays' nbytes, and
#: /proc/self/statm around the read): 13 MB of arrays as read (NumPy's text
#: is fixed-width: the e-mail column alone is 3.6 MB), up to 21 MB more that
#: filters derive on first use (upper-cased text, orders, value positions);
#: RSS grows by 29 MB reading it and 48 MB once everything is derived.
SAMPLE_SIZE = 20_000
#: What reading the sample takes at 3M (20,000 look-ups by primary key, the
#: rows made NumPy arrays), measured by `bench_plans`: 0.235-0.320 s, median
#: 0.245, on 2026-12-06 (docs/benchmarks/plans/plans.csv).
SAMPLE_READ_SECONDS = 0.25
#: How long reading the sample may take before PostgreSQL cancels it: its
#: own limit, not the requests' (CRM_STATEMENT_TIMEOUT_MS, 2 s by default).
#: Read from disk (a server just started, the data just loaded, the table's
#: files out of the OS cache: posix_fadvise DONTNEED on them with the server
#: stopped), the sample took 2.5-3.0 s at 3M and 4.9-8.8 s at 10M on
#: 2026-12-07, where warm it takes a third of a second: under the requests'
#: limit a worker that started cold was not ready, and its first request read
#: the sample and got a 503. Twice the slowest cold read, with room; longer
#: than four times it, a worker is waiting on something other than the disk
#: (the readiness probe says not ready meanwhile and tries again).
SAMPLE_READ_TIMEOUT_SECONDS = 30
#: How old a sample may get before it is read again, in the background: the
#: longest the estimates may lag a day's writes (five minutes, as
#: docs/list-query.md promises), and long enough that reading it again takes
#: at most 1/1,000 of a worker's time. A load is seen at once (its swap bumps
#: the data's generation, see core.customers.sample).
SAMPLE_SECONDS = 300
#: How often a sample whose data was replaced, but which still reads the old
#: table (a standby that has not replayed the swap yet), is read again; and
#: how often a lost listening connection is made again (see
#: core.customers.sample.ReplacementListener). Half a second: counts right
#: within a second of a load's swap (issue 33's target) where a standby
#: replays it at once, at a cost of one connection attempt per half second
#: per process while the database is down.
REPLACED_RETRY_SECONDS = 0.5
#: How long a replaced sample is read again for before the regular refresh
#: (SAMPLE_SECONDS) is left to find the new data: a standby further behind
#: than this (30 s: max_standby_streaming_delay's default, after which a
#: standby cancels what blocks its replay) is past what routing accepts
#: anyway (CRM_REPLICA_MAX_LAG_SECONDS, 5 s by default).
REPLACED_WAIT_SECONDS = 30
#: Ids drawn for the sample are at most this many times its size. Where
#: ids are gone (deleted customers), more are drawn so that about
#: SAMPLE_SIZE exist; this many keep the sample whole while up to 80% are
#: gone, and reading it (one statement of the drawn ids) at most this many
#: times as long as usual (1.25 s at 3M, at a worker's start or in the
#: background: no request waits for it).
SAMPLE_MAX_DRAWS = 5
#: Spacings of the matches before the first sampled one past which a walk is
#: taken to pass a stretch without matches first (see ListSample.walk):
#: evenly spread matches leave such a gap first about once in 150 (e^-5, at
#: most once in 100 is the aim), while a stretch of eight spacings (a walk
#: eight times as long as evenly spread matches would need) is always seen.
SKIPPED = 5

# -- text look-ups and search ------------------------------------------------------

#: A text filter's look-up among the known values stops past this many (see
#: core.customers.known): more than that many names contain the text ("a",
#: "e"), which then matches most customers (5% or more) and is tested on each
#: row a plan reads instead. In generate_data's name pools some text in 422
#: names still matches fewer than 5%: the smallest bound that keeps such a
#: text looked up, with room; an IN list of thousands costs more to plan and
#: to probe than it saves.
MAX_VALUES = 500
#: The shortest word of a phone substring that its trigram index is asked
#: for alone (core.customers.filters.indexed_piece): three trigrams of its
#: own; the short words of "+49 30 …" yield trigrams most numbers share.
INDEXED_PIECE_LENGTH = 5
#: How similar a word must be to a city's name to be read as that city: well
#: above the names' 0.25 (``pg_trgm.similarity_threshold`` on this project's
#: sessions), so that "mary" (0.25 to "Marseille") stays a name while
#: "viena" (0.63 to "Vienna") is the city.
CITY_SIMILARITY = 0.5
#: Words of a search beyond this many are ignored: a first name, a last
#: name, a city and a number (a customer's, a phone's or an e-mail) say who
#: someone is; each word is a look-up and a condition more.
MAX_SEARCH_WORDS = 4

# -- counts ------------------------------------------------------------------------

#: Estimates up to this many times the exact-count threshold are checked by a
#: count that stops just past the threshold: a count under the threshold must
#: be exact, and a sampled estimate is within 2x of the truth near it (see
#: core.customers.sample) for nine combinations in ten.
COUNT_MARGIN = 2
#: A count under the threshold is skipped (the estimate stands, and says so)
#: where reading the matches would cost more than this (µs, as priced by
#: core.customers.plans.sort_us): about what a page costs. It admits the
#: count of as many matches as the threshold (10,000) read through a
#: filter's index (8 ms), and refuses reading twice as many (16 ms), which a
#: count up to COUNT_MARGIN times the threshold could otherwise do. An exact
#: count of 17,019 customers born since 1980 with "2 4" in their phone number
#: reads every customer (190 ms at 3M), and one of the 4,103 Germans with
#: 5,000 points or more reads the 26,725 customers with that many points
#: (38 ms): cliffs their pages (walks of 32 and 1 ms) do not have.
EXACT_COUNT_BUDGET_US = 10_000

# -- pages and statements -----------------------------------------------------------

#: Rows per page when the client does not say (``page_size``).
DEFAULT_PAGE_SIZE = 50
#: The most rows a client may ask for in one page: a page of 500 rows is
#: about 0.5 MB of JSON and 7 ms at 3M (bench_list's page_size_500).
MAX_PAGE_SIZE = 500
#: Compiled page statements kept per process (core.customers.statements). A
#: shape is the filters present (and what kind of value each has), the
#: ordering and direction, cursor or not, the plan and the count's plan.
#: bench_matrix's seed 1 at 3M (its 219 combinations without a cursor, each
#: with its next page) makes 291 shapes (227 on the test suite's data): they
#: fit with room, so that a client's usual requests stay compiled while others
#: come and go, and no more than twice over (each is a few kB of text).
STATEMENT_CACHE_SIZE = 400
