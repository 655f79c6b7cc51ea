"""Replacing the whole dataset: shadow tables loaded and committed, their
indexes built side by side, then one short swap.

See :func:`customer_dataset_replace` for the design. The rows come from
:mod:`core.dataset.generation`, the tables' definitions from
:mod:`core.dataset.shadow`, the parallel builds from :mod:`core.dataset.builds`;
progress goes to a :class:`~.progress.Progress`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import queue
import resource
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg
from django.db import DatabaseError, connection, connections, transaction
from psycopg import sql

from core.customers.search import search_terms_rebuild
from core.models import Address, AppUser, CustomerRelationship, CustomerRow

from . import binary_copy
from .builds import BuildFailed, BuildPool, Builds, SerialBuilds, Step
from .generation import CustomerDataset
from .progress import Progress
from .shadow import (
    TableDefinition,
    UnsupportedTable,
    refuse_what_a_rebuild_would_lose,
    retired_name,
    shadow_name,
)

#: pg_advisory_lock key held while a dataset is being replaced ("crm-gen").
DATASET_LOCK_KEY = 0x63726D2D67656E

#: How long a load (or migrate's clean-up) waits for another one's lock: a
#: killed load's session lets go within a second (client_connection_check_interval).
LOCK_WAIT = "3s"

#: How long the swap waits for readers of the live tables before giving up.
SWAP_LOCK_TIMEOUT = "10s"

#: Index builds sort in memory up to this much per connection (and GIN
#: builds accumulate their entries in it). Less makes them spill to disk.
DEFAULT_MAINTENANCE_WORK_MEM = "1GB"

#: PostgreSQL's application_name on the load's sessions, for pg_stat_activity.
APPLICATION_NAME = "generate_data"


class DatasetLoadError(Exception):
    """The dataset could not be replaced; the previous one is untouched."""


@dataclass
class DatasetReport:
    """What a replacement took: seconds per phase, in all, and the peak memory.

    Phases (``seconds``): "generate" is Python's time in the generating
    thread, which overlaps "copy" (until the last table is committed);
    "build" is the index builds, constraints and ANALYZE still running after
    the copy (they start as soon as a table is loaded); "swap" is the
    transaction that puts the new tables in place, "drop" the dropping of
    the replaced ones after it. ``busy`` sums the build steps' seconds by kind over all
    connections. ``wall_seconds`` is the whole replacement, commits included.
    """

    n: int
    chunk: int
    jobs: int
    seconds: dict[str, float] = field(default_factory=dict)
    busy: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def rows(self) -> int:
        """Rows written: per customer, theirs, their address's and their loyalty
        record's, and their row of the list's read table."""
        return len(REPLACED_MODELS) * self.n

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.wall_seconds if self.wall_seconds else 0.0


@dataclass(frozen=True)
class LoadedTable:
    """A table being replaced: its live definition and where its rows come from."""

    definition: TableDefinition
    columns: tuple[str, ...]
    rows: Callable[[int, int], bytes]

    @property
    def live(self) -> str:
        return self.definition.table

    @property
    def shadow(self) -> str:
        return self.definition.shadow


#: The tables generate_data replaces, in the order they are loaded: the one
#: with the most index work (the list's read table) first, so its builds
#: overlap the other copies.
REPLACED_MODELS = (CustomerRow, AppUser, Address, CustomerRelationship)


#: Build priorities. The short steps that others wait for (ANALYZE, foreign
#: keys) go ahead of any index build, so that they overlap the remaining
#: builds instead of trailing after the last one. Index builds go table by
#: table in the order the tables are loaded (each table's ANALYZE and foreign
#: keys can then run while the next table's indexes build, and only the last
#: table's trail), costliest first within a table (so that the last builds to
#: finish are short).
URGENT = 1000.0
TABLE_PRIORITY = 10.0


def default_jobs() -> int:
    """Connections building indexes: one per core this process may use."""
    return len(os.sched_getaffinity(0))


def load_settings(
    maintenance_work_mem: str, server_version: int, lz4_wal: bool = False
) -> dict[str, str]:
    """What the load sets on each of its sessions, so that it needs nothing of
    the server's configuration (the embedded server's ALTER SYSTEM tuning
    included). A DBA's part, what cannot be set per session, is in the README.

    * ``maintenance_work_mem``: index builds sort in memory (a server's
      default of 64 MB makes a 3M-row build spill to disk and wait on it);
    * ``max_parallel_maintenance_workers``: 0, the connections are the
      parallelism; the last build standing gets the idle ones' share
      (see :mod:`.builds`);
    * ``synchronous_commit``: the load's many commits do not wait for the WAL
      to reach the disk; nothing is lost by that, because the swap (which
      keeps the server's setting) waits for everything before it;
    * ``enable_hashjoin``: off, for the foreign keys' validation, which joins
      every referencing key to the referenced ones: both sides have a b-tree
      in key order, and a merge join reads them in order, where a hash join
      (which an untuned server's planner picks, its ``random_page_cost``
      making index scans look dear) hashes 3M keys first: 3 s instead of
      1.5 s on PostgreSQL 15. Index builds and ANALYZE make no joins;
    * ``statement_timeout``, ``lock_timeout``, ``idle_in_transaction_session_timeout``:
      none (the API's per-request limits must not cut a load short);
    * ``client_connection_check_interval`` (PostgreSQL 14+): a killed
      generate_data's statements stop within a second instead of running to
      their end;
    * ``jit``: off, compiling the validation queries costs more than it saves;
    * ``wal_compression``: lz4 when the server has it and the role may set it
      (``lz4_wal``; superusers, or ``GRANT SET ON PARAMETER``). Where the WAL
      carries the load (any ``wal_level`` but minimal), index builds log every
      page whole: compressed, 1.4 GiB of WAL instead of 1.9 at 3M rows, and
      the load about a fifth faster on an untuned PostgreSQL 15.
    """
    settings = {
        "application_name": APPLICATION_NAME,
        "maintenance_work_mem": maintenance_work_mem,
        "max_parallel_maintenance_workers": "0",
        "synchronous_commit": "off",
        "enable_hashjoin": "off",
        "statement_timeout": "0",
        "lock_timeout": "0",
        "idle_in_transaction_session_timeout": "0",
        "jit": "off",
        "timezone": "UTC",
    }
    if server_version >= 140000:
        settings["client_connection_check_interval"] = "1s"
    if lz4_wal:
        settings["wal_compression"] = "lz4"
    return settings


def may_compress_wal_with_lz4(cursor) -> bool:
    """Whether this server knows lz4 WAL compression and this role may set it."""
    cursor.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'wal_compression'")
    if not cursor.fetchone()[0]:
        return False
    if cursor.connection.info.server_version >= 150000:
        cursor.execute("SELECT has_parameter_privilege('wal_compression', 'SET')")
    else:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    return bool(cursor.fetchone()[0])


def customer_dataset_replace(
    *,
    n: int,
    chunk: int,
    seed: int = 42,
    as_of: dt.date | None = None,
    jobs: int | None = None,
    maintenance_work_mem: str = DEFAULT_MAINTENANCE_WORK_MEM,
    progress: Progress | None = None,
) -> DatasetReport:
    """Replace all customers, addresses and loyalty records with ``n`` generated ones.

    Design: build beside, then swap. Each table is rebuilt as a *shadow*
    (``<table>__load``): created, filled by ``COPY … FREEZE`` in binary and
    committed, one table after the other, while ``jobs`` other connections
    build the indexes and constraints of the tables already loaded
    (:class:`~.builds.BuildPool`), then ANALYZE them. A last, short
    transaction drops the live tables and renames the shadows (and their
    indexes) into place.

    * Atomic for readers: the live tables are untouched, and serve, until
      the swap; the swap holds its locks for the milliseconds of its renames
      (the replaced tables are dropped after it) and waits at most
      :data:`SWAP_LOCK_TIMEOUT` for running readers.
    * Kill-safe: an error or Ctrl-C drops the shadows before returning; a
      SIGKILL (or a crash of the machine) leaves at most committed shadow
      tables, or replaced tables not yet dropped, which the next
      generate_data, and ``migrate`` (:func:`stray_shadows_drop`), drop. The
      live data and every index stay.
    * Fast: a table created in the same transaction takes ``COPY … FREEZE``
      (rows are written frozen and all-visible: no hint-bit rewrites, no
      anti-wraparound vacuum later, index-only scans from the start), and
      with ``wal_level=minimal`` writes no WAL; indexes are built once over
      the loaded rows, several at a time; the Python thread that generates
      the next chunk runs while PostgreSQL ingests the current one.
    * The identity sequences restart after the last generated id, as
      ``TRUNCATE … RESTART IDENTITY`` followed by the load would leave them.
    * A migration that changes these tables while a load runs makes the
      swap refuse (it compares the live tables' definitions with those the
      shadows were built from) rather than lose the change.

    Inside a transaction the caller owns (a test), other sessions cannot
    see the shadows: the same steps then run one after another on this
    connection, all in the caller's transaction.

    Memory holds a few chunks whatever ``n`` is.
    """
    if connection.vendor != "postgresql":
        raise DatasetLoadError(f"generate_data needs PostgreSQL, not {connection.vendor}")
    jobs = jobs or default_jobs()
    load = _Load(
        dataset=CustomerDataset(seed=seed, as_of=as_of or dt.datetime.now(dt.UTC).date(), n=n),
        n=n,
        chunk=chunk,
        progress=progress or Progress(),
        report=DatasetReport(n=n, chunk=chunk, jobs=jobs),
    )
    started = time.perf_counter()
    with _dataset_lock():
        with connection.cursor() as cursor:
            lz4_wal = may_compress_wal_with_lz4(cursor)
        settings = load_settings(maintenance_work_mem, connection.pg_version, lz4_wal)
        if connection.in_atomic_block:
            with (
                transaction.atomic(),
                connection.cursor() as cursor,
                _local_settings(cursor, settings),
            ):
                load.prepare(cursor)
                load.run(cursor, SerialBuilds(load.steps(), cursor), settings)
        else:
            with connection.cursor() as cursor:
                load.prepare(cursor)
            pool = BuildPool(load.steps(), separate_connection, jobs, settings)
            try:
                load.run(None, pool, settings)
            except BaseException as exc:
                pool.close()
                _shadows_drop_after_failure()
                if isinstance(exc, BuildFailed):
                    raise DatasetLoadError(f"an index or constraint failed: {exc}") from exc
                raise
            pool.close()
    load.progress.close()
    load.report.wall_seconds = time.perf_counter() - started
    load.report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return load.report


@dataclass
class _Load:
    dataset: CustomerDataset
    n: int
    chunk: int
    progress: Progress
    report: DatasetReport
    tables: list[LoadedTable] = field(default_factory=list)

    def prepare(self, cursor) -> None:
        """Drop what a killed load left, read the live tables' definitions."""
        shadow_tables_drop(cursor)
        lives = [model._meta.db_table for model in REPLACED_MODELS]
        try:
            refuse_what_a_rebuild_would_lose(cursor, lives)
            definitions = [TableDefinition.read(cursor, live) for live in lives]
        except UnsupportedTable as exc:
            raise DatasetLoadError(str(exc)) from exc
        sources = {
            CustomerRow: (self.dataset.CUSTOMER_LIST_COLUMNS, self.dataset.customer_list_rows),
            AppUser: (self.dataset.APPUSER_COLUMNS, self.dataset.appuser_rows),
            Address: (self.dataset.ADDRESS_COLUMNS, self.dataset.address_rows),
            CustomerRelationship: (
                self.dataset.RELATIONSHIP_COLUMNS,
                self.dataset.relationship_rows,
            ),
        }
        self.tables = [
            LoadedTable(definition, *sources[model])
            for model, definition in zip(REPLACED_MODELS, definitions, strict=True)
        ]

    def run(self, cursor, builds: Builds, settings: dict[str, str]) -> None:
        """Copy, build, swap; ``cursor`` is the caller's transaction's, or None."""
        started = time.perf_counter()
        self._copy_all(cursor, builds, settings)
        self.report.seconds["copy"] = time.perf_counter() - started
        started = time.perf_counter()
        self.progress.phase("build", builds.total, "steps")
        shown = [0]

        def report(finished: int) -> None:
            if finished > shown[0]:
                self.progress.advance(finished - shown[0])
                shown[0] = finished

        builds.finish(report)
        self.report.seconds["build"] = time.perf_counter() - started
        self.report.busy = dict(builds.times.busy)
        started = time.perf_counter()
        self.progress.phase("swap", 1, "steps")
        self._swap(cursor, settings)
        self.progress.advance()
        self.report.seconds["swap"] = time.perf_counter() - started
        started = time.perf_counter()
        self._drop_retired(cursor)
        self.report.seconds["drop"] = time.perf_counter() - started

    def steps(self) -> list[Step]:
        """Every build step, with what each waits for and what it locks."""
        shadows = {table.live: table.shadow for table in self.tables}
        steps: list[Step] = []
        for rank, table in enumerate(self.tables):
            definition, loaded = table.definition, f"copy {table.live}"
            first = (len(self.tables) - rank) * TABLE_PRIORITY
            indexes = [
                Step(
                    name=f"index {index.temporary}",
                    kind="index",
                    statement=index.create(table.shadow),
                    after=frozenset({loaded}),
                    shares=frozenset({table.live}),
                    priority=first + index.cost,
                    parallel=True,
                )
                for index in definition.indexes
            ]
            built = frozenset({loaded, *(step.name for step in indexes)})
            exclusions = [
                Step(
                    name=f"constraint {table.live} {k}",
                    kind="constraint",
                    statement=statement,
                    after=built,
                    locks=frozenset({table.live}),
                )
                for k, statement in enumerate(definition.exclusion_statements())
            ]
            analyze = Step(
                name=f"analyze {table.live}",
                kind="analyze",
                statement=f"ANALYZE {_quote(table.shadow)}",
                after=built | {step.name for step in exclusions},
                locks=frozenset({table.live}),
                priority=URGENT,
            )
            steps += [*indexes, *exclusions, analyze]
        for table in self.tables:
            for name, definition, references in table.definition.foreign_keys:
                statement = table.definition.foreign_key_statement(name, definition, shadows)
                referenced = {references} & shadows.keys()
                steps.append(
                    Step(
                        name=f"foreign key {table.live} {name}",
                        kind="foreign key",
                        statement=statement,
                        after=frozenset(f"analyze {live}" for live in {table.live, *referenced}),
                        locks=frozenset({table.live, *referenced}),
                        priority=URGENT,
                    )
                )
        return steps

    def _copy_all(self, cursor, builds: Builds, settings: dict[str, str]) -> None:
        """Create and fill each shadow, committing each one unless in the caller's transaction."""
        started = time.perf_counter()
        self.dataset.warm_up()
        generate = [time.perf_counter() - started]
        self.progress.phase("copy", len(self.tables) * self.n)
        with _Producer(self.tables, self.n, self.chunk, generate) as chunks:
            for index, table in enumerate(self.tables):
                with transaction.atomic(), _cursor(cursor) as copy_cursor:
                    if cursor is None:
                        _set_local(copy_cursor, settings)
                    for statement in table.definition.create_statements():
                        copy_cursor.execute(statement)
                    self._copy(copy_cursor, table, index, chunks)
                builds.done(f"copy {table.live}")
                builds.check()
        self.report.seconds["generate"] = generate[0]

    def _copy(self, cursor, table: LoadedTable, index: int, chunks: Iterator) -> None:
        statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT binary, FREEZE)").format(
            sql.Identifier(table.shadow), sql.SQL(", ").join(map(sql.Identifier, table.columns))
        )
        with cursor.copy(statement) as copy:
            copy.write(binary_copy.HEADER)
            for kind, rows, data in chunks:
                assert kind == index
                if data is None:
                    break
                copy.write(data)
                self.progress.advance(rows)
            copy.write(binary_copy.TRAILER)

    def _swap(self, cursor, settings: dict[str, str]) -> None:
        """Rename the live tables out of the way and the shadows (and what they
        carry) into place: catalog changes only, so the locks that readers
        wait for are held for milliseconds."""
        lives = [table.live for table in self.tables]
        with transaction.atomic(), _cursor(cursor) as swap:
            _set_local(
                swap,
                {
                    "application_name": settings["application_name"],
                    "statement_timeout": "0",
                    "client_min_messages": "warning",  # no NOTICE per index adopted
                    **(
                        {"client_connection_check_interval": "1s"}
                        if "client_connection_check_interval" in settings
                        else {}
                    ),
                },
            )
            # Waiting behind a long-running reader must not hold the API up
            # for long: give up (and roll everything back) rather than queue
            # every request behind the swap.
            _set_local(swap, {"lock_timeout": SWAP_LOCK_TIMEOUT})
            swap.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    sql.SQL(", ").join(map(sql.Identifier, lives))
                )
            )
            changed = [
                table.live
                for table in self.tables
                if TableDefinition.read(swap, table.live) != table.definition
            ]
            if changed:
                raise DatasetLoadError(
                    f"{', '.join(changed)} changed while the data was loading (a migration?); "
                    "run generate_data again"
                )
            for table in self.tables:
                for statement in table.definition.retire_statements(swap):
                    swap.execute(statement)
            for table in self.tables:
                for statement in table.definition.swap_statements(next_id=self.n + 1):
                    swap.execute(statement)
            search_terms_rebuild(swap)

    def _drop_retired(self, cursor) -> None:
        """Drop the replaced tables, now that the swap has committed (in the
        caller's transaction: at once, there is nothing to gain by waiting)."""
        with _cursor(cursor) as drop:
            _drop_tables(drop, [retired_name(table.live) for table in self.tables])


class _Producer:
    """The generating thread: every table's chunks, in order, through a short queue.

    Yields ``(table index, rows, data)``; ``data`` is None at the end of a
    table. A failure in the thread is raised in the consumer.
    """

    def __init__(self, tables: list[LoadedTable], n: int, chunk: int, seconds: list[float]):
        self.tables, self.n, self.chunk, self.seconds = tables, n, chunk, seconds
        self.chunks: queue.Queue = queue.Queue(maxsize=2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._produce, name="generate_data", daemon=True)

    def __enter__(self) -> Iterator:
        self.thread.start()
        return self._consume()

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join()

    def _produce(self) -> None:
        try:
            for index, table in enumerate(self.tables):
                for start in range(0, self.n, self.chunk):
                    if self.stop.is_set():
                        return
                    started = time.perf_counter()
                    stop = min(start + self.chunk, self.n)
                    data = table.rows(start, stop)
                    self.seconds[0] += time.perf_counter() - started
                    self._put((index, stop - start, data))
                self._put((index, 0, None))
        except BaseException as exc:  # handed to the loading thread, which raises it
            self._put((-1, 0, exc))

    def _put(self, item) -> None:
        while not self.stop.is_set():
            try:
                self.chunks.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _consume(self) -> Iterator:
        while True:
            kind, rows, data = self.chunks.get()
            if kind == -1:
                raise data
            yield kind, rows, data


# -- shadow tables: naming, clean-up -------------------------------------------


def shadow_tables_drop(cursor) -> list[str]:
    """Drop the shadow tables of the replaced tables, and the replaced tables a
    swap retired but did not get to drop; the caller holds the dataset lock."""
    lives = [model._meta.db_table for model in REPLACED_MODELS]
    names = [shadow_name(live) for live in lives] + [retired_name(live) for live in lives]
    cursor.execute(
        "SELECT relname FROM pg_class WHERE relname = ANY(%s) "
        "AND relnamespace = current_schema()::regnamespace AND relkind = 'r' ORDER BY 1",
        [names],
    )
    found = [row[0] for row in cursor.fetchall()]
    _drop_tables(cursor, found)
    return found


def _drop_tables(cursor, tables: list[str]) -> None:
    if tables:
        cursor.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(
                sql.SQL(", ").join(map(sql.Identifier, tables))
            )
        )


def stray_shadows_drop(using: str = "default") -> list[str] | None:
    """Drop the shadow tables a killed generate_data left behind (``migrate`` calls this).

    Returns the tables dropped, or None when a load is running (its shadow
    tables are its work in progress, not strays).
    """
    conn = connections[using]
    if conn.vendor != "postgresql":
        return []
    with conn.cursor() as cursor:
        if not _try_dataset_lock(cursor):
            return None
        try:
            return shadow_tables_drop(cursor)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [DATASET_LOCK_KEY])


def _shadows_drop_after_failure() -> None:
    """After a failed load: drop its shadows, on this connection if it still
    works, else on a fresh one (the lock went with the broken session)."""
    try:
        with connection.cursor() as cursor:
            shadow_tables_drop(cursor)
        return
    except DatabaseError:
        connection.close()
    # Whatever remains is dropped by the next generate_data or migrate.
    with contextlib.suppress(DatabaseError):
        stray_shadows_drop()


# -- sessions -------------------------------------------------------------------


@contextlib.contextmanager
def _dataset_lock() -> Iterator[None]:
    """A session-level advisory lock: one dataset replacement per database at a time."""
    with connection.cursor() as cursor:
        if not _try_dataset_lock(cursor):
            raise DatasetLoadError(
                "another generate_data is already replacing the data in this database; "
                "wait for it to finish"
            )
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [DATASET_LOCK_KEY])
        except DatabaseError:
            # The session is broken (say, by Ctrl-C in the middle of COPY):
            # closing it releases the lock, and the original error goes on.
            connection.close()


def _try_dataset_lock(cursor) -> bool:
    """Take the dataset lock, waiting up to LOCK_WAIT for a dying session to let go."""
    with transaction.atomic(using=cursor.db.alias):
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_WAIT])
        try:
            with transaction.atomic(using=cursor.db.alias):
                cursor.execute("SELECT pg_advisory_lock(%s)", [DATASET_LOCK_KEY])
        except DatabaseError:
            return False
    return True


def separate_connection() -> psycopg.Connection:
    """A connection of its own to the project's database (Django's settings), in autocommit."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


def _set_local(cursor, settings: dict[str, str]) -> None:
    """SET LOCAL each setting: they end with the transaction."""
    for name, value in settings.items():
        cursor.execute("SELECT set_config(%s, %s, true)", [name, value])


@contextlib.contextmanager
def _local_settings(cursor, settings: dict[str, str]) -> Iterator[None]:
    """``settings`` for the enclosed statements of the caller's transaction,
    which gets its own values back afterwards (a failure rolls them back)."""
    cursor.execute("SELECT " + ", ".join(["current_setting(%s)"] * len(settings)), list(settings))
    previous = dict(zip(settings, cursor.fetchone(), strict=True))
    _set_local(cursor, settings)
    yield
    _set_local(cursor, previous)


@contextlib.contextmanager
def _cursor(cursor) -> Iterator:
    """The given cursor, or a new one of Django's connection."""
    if cursor is not None:
        yield cursor
    else:
        with connection.cursor() as new:
            yield new


def _quote(identifier: str) -> str:
    return sql.Identifier(identifier).as_string(None)


def stray_shadows_drop_after_migrate(
    sender, using: str, verbosity: int = 1, stdout=None, plan=None, **kwargs
) -> None:
    """``post_migrate``: ``migrate`` also drops what a killed generate_data left.

    ``flush`` sends the signal too (without a plan); it has no reason to.
    """
    if plan is None:
        return
    dropped = stray_shadows_drop(using)
    if stdout is None or verbosity < 1:
        return
    if dropped:
        stdout.write(
            f"  Dropped the shadow tables of an interrupted generate_data: {', '.join(dropped)}"
        )
    elif dropped is None:
        stdout.write("  A generate_data is loading data: its shadow tables are left to it.")
