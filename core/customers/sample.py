"""The planning sample: a uniform sample of the read table, held in each process.

Two questions decide how a page of the list is read and counted: how many
customers match the filters, and how many a sort would have to read. Asking
PostgreSQL (``EXPLAIN``) costs a statement per request, and its answer
assumes the columns are independent: ``city=vienna&country=austria`` comes
out at 2.6% of 3.7% of the customers, where every Viennese is Austrian.

So each process keeps a uniform sample of the read table's rows (the
columns the filters test, as NumPy arrays), and a filter says what it means
on those rows (:meth:`core.customers.filters.ListFilter.sample_test`): a
combination of filters is estimated by counting the sampled rows that meet
all of them, correlations included, in well under a millisecond and with no
SQL. How many rows, and how often they are read again in the background,
are :data:`core.customers.tunables.SAMPLE_SIZE` and ``SAMPLE_SECONDS``.

No request reads it. A process reads it before it takes its first request
(the app registers it as a requirement of readiness, see
:mod:`crm.observability.health` and ``core/apps.py``), and a serving process
hears when the data is replaced (``generate_data``'s swap notifies
:data:`REPLACED_CHANNEL` as it commits) and reads it again at once, in the
background: counts and plans are the new data's within a second of the swap
instead of after ``SAMPLE_SECONDS``. A sample knows which read table it was
read from (:data:`GENERATION`, the table's file), so that a refresh racing
the swap, or a standby that has not replayed it yet, is read again.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
from django.conf import settings
from django.db import DatabaseError, connections, models, transaction
from django.db.backends.utils import CursorWrapper

from core.folding import fold
from core.models import CustomerRow
from core.read_table import read_table
from crm.observability import metrics
from crm.postgres.transaction_settings import local_settings

from .tunables import (
    REPLACED_RETRY_SECONDS,
    REPLACED_WAIT_SECONDS,
    SAMPLE_MAX_DRAWS,
    SAMPLE_READ_TIMEOUT_SECONDS,
    SAMPLE_SECONDS,
    SAMPLE_SIZE,
    SKIPPED,
)

logger = logging.getLogger(__name__)

#: The sample's name among the process's requirements (/readyz, the metrics).
NAME = "planning_sample"

#: How the sample reads a column of each type: text as it is (a substring
#: test upper-cases it, see ListSample.upper), times as microseconds since
#: 1970 and dates as their ordinal, as floats (NaN: none), so that a range is
#: one NumPy comparison and a walk's order one ``argsort``.
READ_AS: dict[type[models.Field], tuple[str, type]] = {
    models.CharField: ("{}", str),
    models.DateTimeField: ("extract(epoch FROM {})::float8 * 1e6", float),
    models.DateField: ("({} - date '0001-01-01' + 1)::float8", float),
    models.IntegerField: ("{}::float8", float),
}


def sampled_columns() -> dict[str, tuple[str, type]]:
    """The columns the list filters, sorts or searches by (each one's key
    column: the birthday's ``birthday_key``), and how each is read."""
    table = read_table(CustomerRow)
    columns = {}
    for column in table.columns:
        used = column.listed.filter or column.listed.sort or column.listed.search
        if not used:
            continue
        field = CustomerRow._meta.get_field(column.key)
        field = getattr(field, "output_field", None) or field  # a generated column's type
        expression, kind = next(v for t, v in READ_AS.items() if isinstance(field, t))
        columns[column.key] = (expression.format(column.key), kind)
    return columns


#: The sampled columns, and how each is read.
SAMPLED = sampled_columns()

TABLE = CustomerRow._meta.db_table

#: Which read table the data is in: its file, new whenever the table is
#: replaced (generate_data's swap renames a new table into place; a
#: TRUNCATE or a rewrite gives it a new file too), the same on a standby
#: once it has replayed that. A sample keeps the one it was read from.
GENERATION = f"pg_relation_filenode('{TABLE}')"

#: The channel generate_data's swap notifies (``NOTIFY``, delivered to every
#: listening session when the swap commits): the read table was replaced.
REPLACED_CHANNEL = "crm_read_table_replaced"


def instant_number(instant: dt.datetime) -> float:
    """An instant as the sample holds it: microseconds since 1970."""
    return instant.timestamp() * 1e6


def sampled_value(value: Any) -> Any:
    """A key value (a cursor's) as the sample holds its column."""
    if isinstance(value, dt.datetime):
        return instant_number(value)
    if isinstance(value, dt.date):
        return float(value.toordinal())
    if isinstance(value, int):
        return float(value)
    return value


@dataclass(frozen=True)
class ListSample:
    """Sampled rows of the read table, column by column, and how many rows
    the table has: each sampled row stands for ``rows / size`` customers."""

    rows: int
    columns: dict[str, np.ndarray]
    #: The read table it was read from (:data:`GENERATION`; None: made by hand).
    generation: int | None = None
    #: Upper-cased text columns and sort orders, computed on first use.
    _derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def size(self) -> int:
        return len(self.columns["id"])

    @property
    def scale(self) -> float:
        """Customers each sampled row stands for."""
        return self.rows / self.size if self.size else 0.0

    def scaled(self, mask: np.ndarray) -> int:
        """Customers of the table that the sampled rows of ``mask`` stand for."""
        return round(int(np.count_nonzero(mask)) * self.scale)

    def everyone(self) -> np.ndarray:
        return np.ones(self.size, dtype=bool)

    def upper(self, column: str) -> np.ndarray:
        key = f"upper:{column}"
        if key not in self._derived:
            self._derived[key] = np.strings.upper(self.columns[column])
        return self._derived[key]

    def present(self, column: str) -> np.ndarray:
        """Rows with a value in the numeric ``column`` (NaN: none)."""
        return ~np.isnan(self.columns[column])

    def contains(self, column: str, text: str) -> np.ndarray:
        """Rows whose ``column`` contains ``text`` (upper-cased), any case."""
        return np.strings.find(self.upper(column), text) >= 0

    def contains_folded(self, column: str, text: str) -> np.ndarray:
        """Rows whose ``column``, folded (:mod:`core.folding`), contains ``text``."""
        key = f"folded:{column}"
        if key not in self._derived:
            distinct, inverse = self.distinct(column)
            self._derived[key] = np.array([fold(value) for value in distinct.tolist()])[inverse]
        return np.strings.find(self._derived[key], text) >= 0

    def equals(self, column: str, value: object) -> np.ndarray:
        return self.columns[column] == value

    def isin(self, column: str, values: list[str]) -> np.ndarray:
        """Rows whose ``column`` is one of ``values``: looked up by value (a
        name filter's few values), where ``np.isin`` compared every sampled
        string with each (0.3 ms a request)."""
        key = f"positions:{column}"
        if key not in self._derived:
            distinct, inverse = self.distinct(column)
            order = np.argsort(inverse, kind="stable")
            bounds = np.searchsorted(inverse[order], np.arange(len(distinct) + 1))
            self._derived[key] = {
                value: order[bounds[i] : bounds[i + 1]] for i, value in enumerate(distinct.tolist())
            }
        positions = self._derived[key]
        mask = np.zeros(self.size, dtype=bool)
        for value in values:
            found = positions.get(value)
            if found is not None:
                mask[found] = True
        return mask

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

    def follows(self, column: str) -> float:
        """How closely ``column``'s order follows the table's own (0 to 1): the
        rank correlation with the id, in whose order rows are written."""
        key = f"follows:{column}"
        if key not in self._derived:
            value = 0.0
            if self.size > 1:
                ranks = np.empty(self.size)
                ranks[self.order(column)] = np.arange(self.size)
                by_id = np.empty(self.size)
                by_id[self.order("id")] = np.arange(self.size)
                value = abs(float(np.corrcoef(ranks, by_id)[0, 1]))
            self._derived[key] = np.float64(0.0 if math.isnan(value) else value)
        return float(self._derived[key])

    def order(self, column: str) -> np.ndarray:
        """The sampled rows in ``column``'s order (a b-tree's, missing values last)."""
        key = f"order:{column}"
        if key not in self._derived:
            self._derived[key] = np.argsort(self.columns[column], kind="stable")
        return self._derived[key]

    def distinct(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """``column``'s distinct values in order (a b-tree's: missing values
        last), and each sampled row's place among them (ties level)."""
        key = f"distinct:{column}"
        if key not in self._derived:
            self._derived[key] = np.unique(self.columns[column], return_inverse=True)
        return self._derived[key]

    def walk(
        self,
        keys: Sequence[tuple[str, bool]],
        matches: np.ndarray,
        within: np.ndarray,
        after: Sequence[Any] | None,
        needed: int,
    ) -> float:
        """How many entries of an index a walk reads to find ``needed``
        matches, found by walking the sample the same way: in the order of
        ``keys`` (each a column and whether it descends: the walked index's
        keys, as far as the sample holds them), from the cursor's key values
        ``after`` on (None: from the start), over the rows ``within`` the
        walk's bounds.

        It sees what evenly spread matches would hide: the customers who
        signed up after 2024 come last in a walk by id (a walk by id passes
        the 60% who signed up before them first), a filter on the walked
        field itself puts every match at one end, and a cursor deep inside
        the ties of its first key (the Seattle customers of a walk by
        country, city and id) starts where its later keys say, not at the
        first of those ties.
        """
        order = self._order(tuple(keys))
        keep = within if after is None else within & self._from(keys, after)
        walked = order[keep[order]]
        found = np.flatnonzero(matches[walked])
        domain = len(walked)
        wanted = needed / self.scale if self.scale else 0.0
        if not len(found) or wanted > len(found):
            return domain * self.scale  # the walk reads all it may, and comes up short
        if wanted >= 1:
            return (found[math.ceil(wanted) - 1] + 1) * self.scale
        # Fewer matches wanted than one sampled row stands for: the walk ends
        # about where the first sampled match lies, at the matches' spacing
        # from there on, after a stretch without matches if the first lies
        # clearly late (more than SKIPPED spacings in; evenly spread matches
        # leave such a gap first about once in 150).
        spacing = (domain - found[0]) / len(found)
        skipped = found[0] - spacing if found[0] > SKIPPED * spacing else 0.0
        return (skipped + wanted * spacing) * self.scale

    def _order(self, keys: tuple[tuple[str, bool], ...]) -> np.ndarray:
        """The sampled rows in the order of ``keys``: a descending key's
        missing values first, as PostgreSQL's ``DESC`` puts its nulls."""
        cached = f"order:{keys}"
        if cached not in self._derived:
            ranks = [self.distinct(c)[1] * (-1 if descending else 1) for c, descending in keys]
            self._derived[cached] = np.lexsort(ranks[::-1]) if ranks else np.arange(self.size)
        return self._derived[cached]

    def _from(self, keys: Sequence[tuple[str, bool]], boundary: Sequence[Any]) -> np.ndarray:
        """Rows at or past ``boundary`` in the order of ``keys``: past it in
        a key, or tied with it there and at or past it in the next."""
        past = np.zeros(self.size, dtype=bool)
        tied = self.everyone()
        for (column, descending), value in zip(keys, boundary, strict=False):
            if value is None:
                break  # a missing key value: its ties stand for the rest
            values, value = self.columns[column], sampled_value(value)
            missing = np.isnan(values) if values.dtype.kind == "f" else np.zeros_like(tied)
            with np.errstate(invalid="ignore"):
                beyond = values < value if descending else (values > value) | missing
                past |= tied & beyond
                tied &= values == value
        return past | tied


def read_sample(alias: str, size: int = SAMPLE_SIZE, seed: int = 0) -> ListSample:
    """A uniform sample of about ``size`` rows of the read table on ``alias``.

    Customers are drawn by id, uniformly between the smallest and the
    largest (primary-key look-ups: a few hundred milliseconds at any size,
    where ``TABLESAMPLE BERNOULLI`` reads the whole table and ``SYSTEM``
    samples whole pages of neighbouring customers); ids nobody has any more
    draw nothing. A table of at most ``size`` rows is read whole.
    """
    select = ", ".join(expression for expression, _ in SAMPLED.values())
    with _reading_limits(alias) as cursor:
        cursor.execute(
            f"SELECT (SELECT greatest(reltuples, 0)::bigint FROM pg_class "
            f"        WHERE oid = '{TABLE}'::regclass), min(id), max(id), {GENERATION} "
            f"FROM {TABLE}"
        )
        estimated, low, high, generation = cursor.fetchone()
        if low is None:
            return ListSample(
                0,
                {name: np.array([], dtype=kind) for name, (_, kind) in SAMPLED.items()},
                generation,
            )
        span = high - low + 1
        if estimated <= size or span <= size:
            cursor.execute(f"SELECT {select} FROM {TABLE}")
            rows = cursor.fetchall()
            table_rows = len(rows)
        else:
            # Ids drawn so that about `size` exist where some are missing.
            draws = min(span, round(size * span / estimated), SAMPLE_MAX_DRAWS * size)
            ids = np.random.default_rng(seed).choice(span, size=draws, replace=False) + low
            cursor.execute(f"SELECT {select} FROM {TABLE} WHERE id = ANY(%s)", [ids.tolist()])
            rows = cursor.fetchall()
            table_rows = estimated
    columns = {
        name: np.array([row[i] for row in rows], dtype=kind)
        for i, (name, (_, kind)) in enumerate(SAMPLED.items())
    }
    return ListSample(table_rows, columns, generation)


@contextmanager
def _reading_limits(alias: str) -> Iterator[CursorWrapper]:
    """A cursor on ``alias`` whose statements may take
    :data:`~core.customers.tunables.SAMPLE_READ_TIMEOUT_SECONDS`, in a
    transaction of their own (a savepoint in one already open).

    The session's limits are a request's (2 s), which a read from disk
    outlasts. The lock timeout stays the session's: a worker that starts
    while a migration holds the table gives up soon, not ready. A read that
    fails inside an open transaction (a test's, an API call's reading the
    sample on first use) rolls back to its savepoint, undoing its limit, and
    leaves the transaction usable; one that succeeds puts the limit back as
    it was (``SET LOCAL`` would outlast a released savepoint).
    """
    limits = {"statement_timeout": f"{SAMPLE_READ_TIMEOUT_SECONDS}s"}
    with (
        transaction.atomic(using=alias),
        connections[alias].cursor() as cursor,
        local_settings(cursor, limits),
    ):
        yield cursor


class SampleCache:
    """The sample of each database alias: read before a process serves
    (:meth:`prepare`), refreshed in the background when :data:`SAMPLE_SECONDS`
    old or when the data was replaced (:meth:`replaced`). A process that was
    not prepared (a management command, a test) reads it on first use."""

    def __init__(self) -> None:
        self._samples: dict[str, tuple[float, ListSample]] = {}
        self._refreshing: set[str] = set()
        #: Aliases whose refresh under way may have read the replaced data.
        self._again: set[str] = set()
        self._lock = threading.Lock()
        self._reading = threading.Lock()

    def get(self, alias: str) -> ListSample:
        entry = self._samples.get(alias)
        if entry is None:
            # Not prepared (a command, a test, a database down at start):
            # one thread reads it, the others wait for that one. Forty threads
            # of runserver reading it at once held its pool's four connections
            # past the pool's 5-second wait (issue 33's burst: 503s).
            with self._reading:
                entry = self._samples.get(alias)
                if entry is None:
                    return self.load(alias, "request")
        read_at, sample = entry
        if time.monotonic() - read_at >= SAMPLE_SECONDS:
            self._refresh_in_background(alias, "refresh")
        return sample

    def load(self, alias: str, reason: str) -> ListSample:
        """Read ``alias``'s sample now (counted by ``reason``, see crm.observability.metrics)."""
        sample = read_sample(alias)
        self._samples[alias] = (time.monotonic(), sample)
        metrics.process_state_read(NAME, reason)
        return sample

    def prepare(self, reason: str) -> None:
        """Read every database's sample that is not held (a process's start):
        the primary's must be read; a standby's that cannot be is read by the
        first request routed to it."""
        for alias in settings.DATABASES:
            if alias in self._samples:
                continue
            try:
                self.load(alias, reason)
            except DatabaseError:
                if alias == "default":
                    raise
                logger.warning("planning sample of %s not read at start", alias, exc_info=True)
            finally:
                # The connection of the thread that prepared (runserver's main
                # thread, a pooled connection) is not a request's.
                if settings.DATABASES[alias].get("OPTIONS", {}).get("pool"):
                    connections[alias].close()

    def prepared(self) -> bool:
        return "default" in self._samples

    def replaced(self) -> None:
        """The data was replaced: every sample held is read again, now."""
        for alias in list(self._samples):
            self._refresh_in_background(alias, "replaced")

    def reread(self) -> None:
        """Every sample held is read again, now, once: the data may have been
        replaced while nobody listened (the listener reconnecting after the
        server came back). A sample of the same table is kept, not read again
        every half second for REPLACED_WAIT_SECONDS as after a replacement
        heard of: that held a session of each process and read the table
        twice a second, for 30 s, right when the server was back."""
        for alias in list(self._samples):
            self._refresh_in_background(alias, "refresh")

    def clear(self) -> None:
        self._samples.clear()

    def _refresh_in_background(self, alias: str, reason: str) -> None:
        with self._lock:
            if alias in self._refreshing:
                if reason == "replaced":
                    self._again.add(alias)
                return
            self._refreshing.add(alias)
        threading.Thread(
            target=self._refresh, args=(alias, reason), daemon=True, name=f"sample-{alias}"
        ).start()

    def _refresh(self, alias: str, reason: str) -> None:
        held = self._samples.get(alias)
        #: The read table the held sample came from: a replaced one must differ.
        replaced_from = held[1].generation if held is not None else None
        waited = 0.0
        try:
            while True:
                sample = read_sample(alias)
                if (
                    reason == "replaced"
                    and sample.generation == replaced_from
                    and waited < REPLACED_WAIT_SECONDS
                ):
                    # A standby that has not replayed the swap yet: its
                    # sample would be the old data's until the next refresh.
                    time.sleep(REPLACED_RETRY_SECONDS)
                    waited += REPLACED_RETRY_SECONDS
                    continue
                self._samples[alias] = (time.monotonic(), sample)
                metrics.process_state_read(NAME, reason)
                with self._lock:
                    if alias not in self._again:
                        self._refreshing.discard(alias)
                        return
                    # The data was replaced while this read ran: read again,
                    # unless this read already found the new table.
                    self._again.discard(alias)
                reason = "replaced"
        except DatabaseError:
            # Keep the sample there is; the next request after SAMPLE_SECONDS tries again.
            current = self._samples.get(alias, held)
            if current is not None:
                self._samples[alias] = (time.monotonic(), current[1])
            with self._lock:
                self._refreshing.discard(alias)
                self._again.discard(alias)
        finally:
            # The thread's own connection: Django opens one per thread.
            connections[alias].close()


#: The process's samples.
samples = SampleCache()


#: PostgreSQL's application_name on a listener's session (pg_stat_activity):
#: one per serving process, beside its pool.
LISTENER_APPLICATION_NAME = "crm-sample-listener"


class ReplacementListener(threading.Thread):
    """Hears generate_data's swap (:data:`REPLACED_CHANNEL`) on a connection of
    its own and has every sample read again at once.

    A serving process runs one (``follow``, from crm.observability.health);
    behind a transaction-mode pooler (``DATABASE_PGBOUNCER``), which cannot
    hold a ``LISTEN``, none: there the samples follow a load within
    :data:`SAMPLE_SECONDS`. A lost connection is made again every
    :data:`REPLACED_RETRY_SECONDS`, and the samples read again then, since a
    swap may have gone unheard.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True, name="sample-replacements")

    def run(self) -> None:
        heard_all = True
        while True:
            try:
                params = connections["default"].get_connection_params()
                params.pop("cursor_factory", None)
                params.pop("context", None)
                params["application_name"] = LISTENER_APPLICATION_NAME
                with psycopg.connect(**params, autocommit=True) as listening:
                    listening.execute(f"LISTEN {REPLACED_CHANNEL}")
                    if not heard_all:
                        samples.reread()  # a replacement may have gone unheard
                    heard_all = True
                    for _ in listening.notifies():
                        samples.replaced()
            except (psycopg.Error, DatabaseError) as exc:
                if heard_all:
                    logger.warning("not listening for replaced data: %s", exc)
                heard_all = False
            time.sleep(REPLACED_RETRY_SECONDS)


_listener: ReplacementListener | None = None


def follow_replacements() -> None:
    """Start this process's :class:`ReplacementListener` (once)."""
    global _listener
    if _listener is None and not settings.CRM_DATABASE_POOLER:
        _listener = ReplacementListener()
        _listener.start()
