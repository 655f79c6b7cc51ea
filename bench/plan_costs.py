"""bench_plans: what each step of the list's two plans costs on the loaded data.

:mod:`core.customers.plans` chooses between walking the ordering's index and
sorting the matches by four costs per row. This measures each on the read
table the way the page statement spends it, with a condition no row meets
(``gender = '-'``: every row read is tested, none returned), so that only
the step itself is timed:

* ``scattered_row_us``: a row read out of the table's order and tested: the
  median of walks of indexes whose field is scattered over the table (the
  names, the points, the birthday) and of customers found through a filter's
  index (a range of the points);
* ``sequential_row_us``: a row read in the table's order and tested: the
  median of walks of the indexes that follow it (the id, the sign-up time)
  and of a sequential scan (no parallel workers: a page gets one core);
* ``index_entry_us``: an entry of a filter's index put in a bitmap (what a
  sort that intersects two filters' indexes pays per entry before it reads
  a row), from the bitmap index scans of such a plan;
* ``sort_row_us``: a match sorted by a key no index holds (a top-N sort of
  its page), above reading and counting it;
* ``sample_read_s``: reading the planning sample
  (:func:`core.customers.sample.read_sample`), statement and arrays, as a
  process does when it starts and every few minutes after.

Each walk's cost is printed beside how closely its field follows the rows
(PostgreSQL's own ``pg_stats.correlation``), which is what
:func:`core.customers.plans.row_us` interpolates by.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass

from django.db import connection

from core.customers.sample import read_sample

#: Entries a walk reads, and rows a read finds, at most (fewer on small data).
WALKED = 100_000
READ = 50_000
#: The sortable indexes walked, by whether their field follows the rows.
SEQUENTIAL_ORDERS = ("id", "created, id")
SCATTERED_ORDERS = ("last_name, first_name, id", "points, id", "birthday_key, id")
NOBODY = "(gender = '-') IS TRUE"


@dataclass(frozen=True)
class PlanCosts:
    """Microseconds per row of each step, and the rows each was measured over."""

    scattered_row_us: float
    sequential_row_us: float
    index_entry_us: float
    sort_row_us: float
    sample_read_s: float
    customers: int
    walked: int
    read: int
    #: Each walk's µs per entry, by index order.
    walks: dict[str, float]

    def as_row(self) -> dict[str, object]:
        return {
            "scattered_row_us": f"{self.scattered_row_us:.3f}",
            "sequential_row_us": f"{self.sequential_row_us:.3f}",
            "index_entry_us": f"{self.index_entry_us:.3f}",
            "sort_row_us": f"{self.sort_row_us:.3f}",
            "sample_read_s": f"{self.sample_read_s:.3f}",
            "customers": self.customers,
            "walked": self.walked,
            "read": self.read,
        }


def _timed(cursor, sql: str, params: list, repeat: int) -> float:
    """Median seconds of ``sql`` over ``repeat`` runs, after one to warm the cache."""
    cursor.execute(sql, params)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        cursor.execute(sql, params)
        cursor.fetchall()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _bitmap_entry_seconds(cursor, bound: int, repeat: int) -> float:
    """Seconds per entry of the bitmap index scans of a plan that intersects
    two filters' indexes (the points range and the customers born since 1980),
    the median of ``repeat`` runs of ``EXPLAIN ANALYZE``."""
    cursor.execute("SET enable_indexscan = off")
    cursor.execute("SET enable_seqscan = off")
    per_entry = []
    for _ in range(repeat + 1):
        cursor.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM core_customer_list "
            "WHERE points >= %s AND birthday_key >= '1980-01-01'",
            [bound],
        )
        plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        scans = list(_nodes(plan[0]["Plan"], "Bitmap Index Scan"))
        entries = sum(node["Actual Rows"] for node in scans)
        seconds = sum(node["Actual Total Time"] for node in scans) / 1000
        per_entry.append(seconds / max(entries, 1))
    cursor.execute("RESET enable_indexscan")
    cursor.execute("RESET enable_seqscan")
    return statistics.median(per_entry[1:])


def _nodes(node: dict, kind: str):
    if node["Node Type"] == kind:
        yield node
    for child in node.get("Plans", []):
        yield from _nodes(child, kind)


def measure(repeat: int = 7) -> PlanCosts:
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
        cursor.execute("SET max_parallel_workers_per_gather = 0")
        cursor.execute("SELECT count(*) FROM core_customer_list")
        customers = cursor.fetchone()[0]
        walked = min(WALKED, customers // 2)
        read = min(READ, customers // 10)
        walks = {
            order: _timed(
                cursor,
                f"SELECT id FROM (SELECT * FROM core_customer_list ORDER BY {order} LIMIT %s) w "
                f"WHERE {NOBODY}",
                [walked],
                repeat,
            )
            / walked
            for order in (*SEQUENTIAL_ORDERS, *SCATTERED_ORDERS)
        }
        # The points above which `read` customers lie: a range of the points index.
        cursor.execute(
            "SELECT points FROM core_customer_list WHERE points IS NOT NULL "
            "ORDER BY points DESC OFFSET %s LIMIT 1",
            [read - 1],
        )
        bound = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM core_customer_list WHERE points >= %s", [bound])
        found = cursor.fetchone()[0]
        reading = _timed(
            cursor,
            f"SELECT count(*) FROM core_customer_list WHERE points >= %s AND {NOBODY}",
            [bound],
            repeat,
        )
        # The same rows, untested: read and counted, then read and sorted.
        counting = _timed(
            cursor, "SELECT count(*) FROM core_customer_list WHERE points >= %s", [bound], repeat
        )
        sorting = _timed(
            cursor,
            "SELECT id FROM core_customer_list WHERE points >= %s ORDER BY id + 0 LIMIT 51",
            [bound],
            repeat,
        )
        scanning = _timed(cursor, f"SELECT count(*) FROM core_customer_list WHERE {NOBODY}", [], 3)
        entry = _bitmap_entry_seconds(cursor, bound, repeat)
        cursor.execute("RESET max_parallel_workers_per_gather")
    sample_reads = []
    for seed in range(repeat + 1):
        started = time.perf_counter()
        read_sample(connection.alias, seed=seed)
        sample_reads.append(time.perf_counter() - started)
    micro = 1e6
    scattered = [walks[order] for order in SCATTERED_ORDERS] + [reading / found]
    sequential = [walks[order] for order in SEQUENTIAL_ORDERS] + [scanning / customers]
    return PlanCosts(
        scattered_row_us=statistics.median(scattered) * micro,
        sequential_row_us=statistics.median(sequential) * micro,
        index_entry_us=entry * micro,
        sort_row_us=max(0.0, sorting - counting) / found * micro,
        sample_read_s=statistics.median(sample_reads[1:]),
        customers=customers,
        walked=walked,
        read=found,
        walks={order: seconds * micro for order, seconds in walks.items()},
    )
