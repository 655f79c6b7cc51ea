"""The planning sample: a uniform sample of the read table, held in each process.

Two questions decide how a page of the list is read and counted: how many
customers match the filters, and how many a sort would have to read. Asking
PostgreSQL (``EXPLAIN``) costs a statement per request, and its answer
assumes the columns are independent: ``city=vienna&country=austria`` comes
out at 2.5% of 3% of the customers, where every Viennese is Austrian.

So each process keeps a uniform sample of the read table's rows (the
columns the filters test, as NumPy arrays), and a filter says what it means
on those rows (:meth:`core.customers.filters.ListFilter.sample_test`): a
combination of filters is estimated by counting the sampled rows that meet
all of them, correlations included, in well under a millisecond and with no
SQL. At :data:`SAMPLE_SIZE` rows, one sampled row stands for 150 customers
at 3M and 500 at 10M: a count of 10,000 matches is read off about 70 (or
20) sampled rows, within 25% (or 45%) nine times in ten, which is what a
choice between two plans and a count that says "about" need.

The sample is read once per process and database alias, and again in the
background when it is :data:`SAMPLE_SECONDS` old, so that no request waits
for it after the first.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass

import numpy as np
from django.db import DatabaseError, connections

#: Rows in a process's sample (see the module docstring): about 3 MB of arrays.
SAMPLE_SIZE = 20_000
#: How old a sample may get before it is read again, in the background.
SAMPLE_SECONDS = 300

#: The sampled columns, and how each is read: text upper-cased (what the
#: substring filters compare), times as microseconds since 1970 and the
#: birthday as its ordinal, both as float (NaN: none), so that a range is
#: one NumPy comparison.
SAMPLED: dict[str, tuple[str, type]] = {
    "id": ("id::float8", float),
    "first_name": ("upper(first_name)", str),
    "last_name": ("upper(last_name)", str),
    "gender": ("gender", str),
    "customer_id": ("customer_id", str),
    "phone_number": ("upper(phone_number)", str),
    "birthday": ("(coalesce(birthday, '9999-12-31') - date '0001-01-01' + 1)::float8", float),
    "created": ("extract(epoch FROM created)::float8 * 1e6", float),
    "last_updated": ("extract(epoch FROM last_updated)::float8 * 1e6", float),
    "city_code": ("city_code", str),
    "city": ("upper(city)", str),
    "country": ("upper(country)", str),
    "points": ("points::float8", float),
    "last_activity": ("extract(epoch FROM last_activity)::float8 * 1e6", float),
}

TABLE = "core_customer_list"


def instant_number(instant: dt.datetime) -> float:
    """An instant as the sample holds it: microseconds since 1970."""
    return instant.timestamp() * 1e6


@dataclass(frozen=True)
class ListSample:
    """Sampled rows of the read table, column by column, and how many rows
    the table has: each sampled row stands for ``rows / size`` customers."""

    rows: int
    columns: dict[str, np.ndarray]

    @property
    def size(self) -> int:
        return len(self.columns["id"])

    def scaled(self, mask: np.ndarray) -> int:
        """Customers of the table that the sampled rows of ``mask`` stand for."""
        if not self.size:
            return 0
        return round(int(np.count_nonzero(mask)) * self.rows / self.size)

    def everyone(self) -> np.ndarray:
        return np.ones(self.size, dtype=bool)

    def contains(self, column: str, text: str) -> np.ndarray:
        """Rows whose (upper-cased) ``column`` contains ``text`` (upper-cased)."""
        return np.strings.find(self.columns[column], text) >= 0

    def equals(self, column: str, value: object) -> np.ndarray:
        return self.columns[column] == value

    def isin(self, column: str, values: list[str]) -> np.ndarray:
        """Rows whose (upper-cased) ``column`` is one of ``values`` (upper-cased)."""
        return np.isin(self.columns[column], np.array(values, dtype=str))

    def compare(self, column: str, lookup: str, value: float) -> np.ndarray:
        """``column <lookup> value`` (a missing value, NaN, meets none)."""
        values = self.columns[column]
        with np.errstate(invalid="ignore"):
            return {
                "exact": values == value,
                "gte": values >= value,
                "lte": values <= value,
                "lt": values < value,
            }[lookup]


def read_sample(alias: str, size: int = SAMPLE_SIZE, seed: int = 0) -> ListSample:
    """A uniform sample of about ``size`` rows of the read table on ``alias``.

    Customers are drawn by id, uniformly between the smallest and the
    largest (primary-key look-ups: a few hundred milliseconds at any size,
    where ``TABLESAMPLE BERNOULLI`` reads the whole table and ``SYSTEM``
    samples whole pages of neighbouring customers); ids nobody has any more
    draw nothing. A table of fewer than ``2 * size`` rows is read whole.
    """
    select = ", ".join(expression for expression, _ in SAMPLED.values())
    with connections[alias].cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT greatest(reltuples, 0)::bigint FROM pg_class "
            f"        WHERE oid = '{TABLE}'::regclass), min(id), max(id) FROM {TABLE}"
        )
        estimated, low, high = cursor.fetchone()
        if low is None:
            return ListSample(0, {name: np.array([], dtype=kind) for name, (_, kind) in SAMPLED.items()})
        span = high - low + 1
        if estimated < 2 * size or span < 2 * size:
            cursor.execute(f"SELECT {select} FROM {TABLE}")
            rows = cursor.fetchall()
            table_rows = len(rows)
        else:
            # Ids drawn so that about `size` exist where some are missing.
            draws = min(span, round(size * span / estimated), 5 * size)
            ids = np.random.default_rng(seed).choice(span, size=draws, replace=False) + low
            cursor.execute(f"SELECT {select} FROM {TABLE} WHERE id = ANY(%s)", [ids.tolist()])
            rows = cursor.fetchall()
            table_rows = estimated
    columns = {
        name: np.array([row[i] for row in rows], dtype=kind)
        for i, (name, (_, kind)) in enumerate(SAMPLED.items())
    }
    return ListSample(table_rows, columns)


class SampleCache:
    """The sample of each database alias, read on first use and refreshed in
    the background when :data:`SAMPLE_SECONDS` old."""

    def __init__(self) -> None:
        self._samples: dict[str, tuple[float, ListSample]] = {}
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()

    def get(self, alias: str) -> ListSample:
        entry = self._samples.get(alias)
        if entry is None:
            sample = read_sample(alias)
            self._samples[alias] = (time.monotonic(), sample)
            return sample
        read_at, sample = entry
        if time.monotonic() - read_at >= SAMPLE_SECONDS:
            self._refresh_in_background(alias)
        return sample

    def clear(self) -> None:
        self._samples.clear()

    def _refresh_in_background(self, alias: str) -> None:
        with self._lock:
            if alias in self._refreshing:
                return
            self._refreshing.add(alias)
        threading.Thread(target=self._refresh, args=(alias,), daemon=True).start()

    def _refresh(self, alias: str) -> None:
        try:
            self._samples[alias] = (time.monotonic(), read_sample(alias))
        except DatabaseError:
            # Keep the sample there is; the next request after SAMPLE_SECONDS tries again.
            _, sample = self._samples[alias]
            self._samples[alias] = (time.monotonic(), sample)
        finally:
            # The thread's own connection: Django opens one per thread.
            connections[alias].close()
            with self._lock:
                self._refreshing.discard(alias)


#: The process's samples.
samples = SampleCache()
