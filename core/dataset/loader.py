"""Replacing the whole dataset: shadow tables loaded and committed, their
indexes built side by side, then one short swap.

See :func:`customer_dataset_replace` for the design. The rows come from
:mod:`core.dataset.generation` through the generating thread
(:mod:`.producer`), the tables' definitions from :mod:`core.dataset.shadow`,
what is built on them from :mod:`.steps` and the parallel builds from
:mod:`core.dataset.builds`; the sessions' settings are :mod:`.sessions`', the
lock and the clean-up after a failure :mod:`.cleanup`'s; progress goes to a
:class:`~.progress.Progress`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import DatabaseError, connection, transaction
from psycopg import sql

from core.customers.sample import REPLACED_CHANNEL
from core.customers.search import search_terms_rebuild
from core.models import Address, AppUser, CustomerRelationship, CustomerRow, HistoryEvent
from crm.postgres.transaction_settings import local_settings, set_local

from . import binary_copy
from .builds import BuildFailed, BuildPool, Builds, SerialBuilds, Step
from .cleanup import (
    DATASET_LOCK_KEY,
    REPLACED_MODELS,
    drop_tables,
    shadow_tables_drop,
    shadows_drop_after_failure,
    try_dataset_lock,
)
from .generation import CustomerDataset
from .producer import Producer
from .progress import Progress
from .sessions import (
    cursor_or_new,
    load_settings,
    may_compress_wal_with_lz4,
    separate_connection,
)
from .shadow import (
    TableDefinition,
    UnsupportedTable,
    refuse_what_a_rebuild_would_lose,
    retired_name,
)
from .steps import LoadedTable, build_steps

#: How long the swap waits for readers of the live tables before giving up.
SWAP_LOCK_TIMEOUT = "10s"

#: Index builds sort in memory up to this much per connection (and GIN
#: builds accumulate their entries in it). Less makes them spill to disk.
DEFAULT_MAINTENANCE_WORK_MEM = "1GB"


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


def default_jobs() -> int:
    """Connections building indexes: one per core this process may use."""
    return len(os.sched_getaffinity(0))


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
                local_settings(cursor, settings),
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
                shadows_drop_after_failure()
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
        return build_steps(self.tables)

    def _copy_all(self, cursor, builds: Builds, settings: dict[str, str]) -> None:
        """Create and fill each shadow, committing each one unless in the caller's transaction."""
        started = time.perf_counter()
        self.dataset.warm_up()
        generate = [time.perf_counter() - started]
        self.progress.phase("copy", len(self.tables) * self.n)
        with Producer(self.tables, self.n, self.chunk, generate) as chunks:
            for index, table in enumerate(self.tables):
                with transaction.atomic(), cursor_or_new(cursor) as copy_cursor:
                    if cursor is None:
                        set_local(copy_cursor, settings)
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
        with transaction.atomic(), cursor_or_new(cursor) as swap:
            set_local(
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
            set_local(swap, {"lock_timeout": SWAP_LOCK_TIMEOUT})
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
            history_replaced(swap, self.n)
            # Every serving process hears this as the swap commits, and reads
            # its planning sample again (core.customers.sample).
            swap.execute(f"NOTIFY {REPLACED_CHANNEL}")

    def _drop_retired(self, cursor) -> None:
        """Drop the replaced tables, now that the swap has committed (in the
        caller's transaction: at once, there is nothing to gain by waiting)."""
        with cursor_or_new(cursor) as drop:
            drop_tables(drop, [retired_name(table.live) for table in self.tables])


def history_replaced(cursor, customers: int) -> None:
    """The history after a replacement: one event for the whole data set.

    The triggers are created on the new tables at the swap, so the load wrote
    no event per row. The events before it are about customers who are gone,
    whose ids the new ones take: they go with them (in the swap's
    transaction, so that readers see the old data with its history or the
    new with its one event).
    """
    cursor.execute(f"TRUNCATE {HistoryEvent._meta.db_table}")
    cursor.execute(
        f"INSERT INTO {HistoryEvent._meta.db_table} "
        "(at, entity, row_id, customer_id, kind, changes, source) "
        "VALUES (statement_timestamp(), %s, NULL, NULL, %s, %s, %s)",
        [
            HistoryEvent.Entity.DATASET,
            HistoryEvent.Kind.REPLACED,
            json.dumps({"customers": customers}),
            HistoryEvent.Source.COMMAND,
        ],
    )


@contextlib.contextmanager
def _dataset_lock() -> Iterator[None]:
    """A session-level advisory lock: one dataset replacement per database at a time."""
    with connection.cursor() as cursor:
        if not try_dataset_lock(cursor):
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
