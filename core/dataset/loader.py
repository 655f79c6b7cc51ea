"""Replacing the whole dataset: shadow tables, COPY, index builds, and one swap.

See :func:`customer_dataset_replace` for the design. The rows come from
:mod:`core.dataset.generation`; progress goes to a :class:`~.progress.Progress`.
"""

from __future__ import annotations

import datetime as dt
import queue
import re
import resource
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.db import DatabaseError, connection, transaction
from psycopg import sql

from core.customers.search import search_terms_rebuild
from core.models import Address, AppUser, CustomerRelationship

from .generation import CustomerDataset
from .progress import Progress

#: pg_advisory_lock key held while a dataset is being replaced ("crm-gen").
DATASET_LOCK_KEY = 0x63726D2D67656E


class DatasetLoadError(Exception):
    """The dataset could not be replaced; the previous one is untouched."""


@dataclass
class DatasetReport:
    """What a replacement took: seconds per phase, in all, and the peak memory.

    "generate" is Python's time in the generating thread, which overlaps
    "copy"; ``wall_seconds`` is the whole replacement, commit included.
    """

    n: int
    chunk: int
    seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def rows(self) -> int:
        """Rows written: a customer, an address and a loyalty record each."""
        return 3 * self.n

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.wall_seconds if self.wall_seconds else 0.0


@dataclass(frozen=True)
class ShadowTable:
    """A table being rebuilt beside the live one, and how to build and swap it.

    The definitions are read from the live table's catalog entries, so
    whatever the migrations created (constraint and index names included) is
    exactly what the swap leaves behind.
    """

    live: str
    columns: tuple[str, ...]
    rows: Callable[[int, int], bytes]

    @property
    def shadow(self) -> str:
        return f"{self.live}__load"

    def temporary_name(self, k: int) -> str:
        return f"{self.live}__load_{k}"


def customer_dataset_replace(
    *,
    n: int,
    chunk: int,
    seed: int = 42,
    as_of: dt.date | None = None,
    progress: Progress | None = None,
) -> DatasetReport:
    """Replace all customers, addresses and loyalty records with ``n`` generated ones.

    Design: build-and-swap in one transaction. The new rows go into fresh
    *shadow* tables created in the loading transaction, then the live tables
    are dropped and the shadows renamed into their place before commit.

    * Atomic for readers: until commit the live tables are untouched and keep
      serving; the swap itself only holds its locks for the few milliseconds
      of the renames. A failure, Ctrl-C or SIGKILL at any point rolls back
      the transaction, and a rolled-back ``CREATE TABLE`` leaves nothing.
    * Fast: a table created in the same transaction accepts
      ``COPY ... FREEZE`` (rows are written frozen: no hint-bit rewrites, no
      anti-wraparound vacuum later, the visibility map already set for
      index-only scans), and with ``wal_level=minimal`` it is not WAL-logged at
      all. Indexes are built once over the loaded rows (a sort per index)
      instead of being maintained row by row.
    * The identity sequences restart after the last generated id, as
      ``TRUNCATE ... RESTART IDENTITY`` followed by the load would leave them.

    Python generates the next chunk in a second thread while PostgreSQL
    ingests the current one, so the two cores work in parallel. Memory holds
    at most a few chunks, whatever ``n`` is.
    """
    if connection.vendor != "postgresql":
        raise DatasetLoadError(f"generate_data needs PostgreSQL, not {connection.vendor}")
    progress = progress or Progress()
    dataset = CustomerDataset(seed=seed, as_of=as_of or dt.datetime.now(dt.UTC).date())
    tables = [
        ShadowTable(Address._meta.db_table, dataset.ADDRESS_COLUMNS, dataset.address_rows),
        ShadowTable(AppUser._meta.db_table, dataset.APPUSER_COLUMNS, dataset.appuser_rows),
        ShadowTable(
            CustomerRelationship._meta.db_table,
            dataset.RELATIONSHIP_COLUMNS,
            dataset.relationship_rows,
        ),
    ]
    report = DatasetReport(n=n, chunk=chunk)
    wall_started = time.perf_counter()
    with _DatasetLock():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL TIME ZONE 'UTC'")
            # Index builds sort in memory and use parallel workers, also on
            # an external server whose defaults are smaller.
            cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
            cursor.execute("SET LOCAL max_parallel_maintenance_workers = 2")
            definitions = [_definitions(cursor, table) for table in tables]
            for table in tables:
                cursor.execute(
                    sql.SQL("CREATE TABLE {} (LIKE {})").format(
                        sql.Identifier(table.shadow), sql.Identifier(table.live)
                    )
                )
            _copy_all(cursor, tables, dataset, n, chunk, progress, report)
            _build_indexes(cursor, tables, definitions, progress, report)
            started = time.perf_counter()
            progress.phase("analyze", len(tables), "tables")
            for table in tables:
                cursor.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table.shadow)))
                progress.advance()
            report.seconds["analyze"] = time.perf_counter() - started
            started = time.perf_counter()
            _swap(cursor, tables, definitions, next_id=n + 1)
            search_terms_rebuild(cursor)
        report.seconds["swap"] = time.perf_counter() - started
    report.wall_seconds = time.perf_counter() - wall_started
    progress.close()
    report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


@dataclass(frozen=True)
class _Definitions:
    constraints: list[tuple[str, str, str]]  # (name, type, definition)
    indexes: list[tuple[str, str]]  # (name, CREATE INDEX statement)
    identity: list[str]  # identity columns


def _definitions(cursor, table: ShadowTable) -> _Definitions:
    cursor.execute(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass ORDER BY conname",
        [table.live],
    )
    constraints = [row for row in cursor.fetchall() if row[1] != "n"]  # NOT NULL comes via LIKE
    cursor.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = %s::regclass "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid "
        "                AND k.conrelid = i.indrelid) "
        "ORDER BY c.relname",
        [table.live],
    )
    indexes = cursor.fetchall()
    cursor.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
        "AND attidentity <> '' AND NOT attisdropped",
        [table.live],
    )
    return _Definitions(constraints, indexes, [row[0] for row in cursor.fetchall()])


def _copy_all(cursor, tables, dataset, n, chunk, progress, report) -> None:
    """Stream every table's rows through COPY while a thread generates the next chunk."""
    started = time.perf_counter()
    dataset.warm_up()
    report.seconds["generate"] = time.perf_counter() - started
    chunks: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    generate_seconds = [report.seconds["generate"]]

    def produce() -> None:
        try:
            for index, table in enumerate(tables):
                for start in range(0, n, chunk):
                    if stop.is_set():
                        return
                    t = time.perf_counter()
                    data = table.rows(start, min(start + chunk, n))
                    generate_seconds[0] += time.perf_counter() - t
                    _put(chunks, (index, min(chunk, n - start), data), stop)
                _put(chunks, (index, 0, None), stop)
        except BaseException as exc:  # handed to the loading thread, which raises it
            _put(chunks, (-1, 0, exc), stop)

    producer = threading.Thread(target=produce, name="generate_data", daemon=True)
    producer.start()
    progress.phase("copy", 3 * n)
    try:
        for index, table in enumerate(tables):
            statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FREEZE)").format(
                sql.Identifier(table.shadow), sql.SQL(", ").join(map(sql.Identifier, table.columns))
            )
            with cursor.copy(statement) as copy:
                for kind, rows, data in _drain(chunks):
                    if kind == -1:
                        raise data
                    if data is None:
                        break
                    assert kind == index
                    copy.write(data)
                    progress.advance(rows)
    finally:
        stop.set()
        producer.join()
    report.seconds["generate"] = generate_seconds[0]
    report.seconds["copy"] = time.perf_counter() - started


def _put(chunks: queue.Queue, item, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            chunks.put(item, timeout=0.2)
            return
        except queue.Full:
            continue


def _drain(chunks: queue.Queue) -> Iterator:
    while True:
        yield chunks.get()


def _build_indexes(cursor, tables, definitions, progress, report) -> None:
    """Recreate the live tables' constraints and indexes on the shadows, under temporary names.

    Order matters: primary and unique keys first (foreign keys need them on
    the referenced shadow), then plain indexes, then foreign keys and checks.
    """
    started = time.perf_counter()
    shadow_of = {t.live: t.shadow for t in tables}
    steps: list[tuple[int, str]] = []
    for table, defs in zip(tables, definitions, strict=True):
        for k, (_name, kind, definition) in enumerate(defs.constraints):
            if kind == "f":
                # Point the foreign key at the referenced table's shadow.
                definition = re.sub(
                    r"REFERENCES (?:public\.)?(\w+)\(",
                    lambda m: f"REFERENCES {shadow_of.get(m.group(1), m.group(1))}(",
                    definition,
                )
            statement = (
                f"ALTER TABLE {_quote(table.shadow)} "
                f"ADD CONSTRAINT {_quote(table.temporary_name(k))} {definition}"
            )
            steps.append((0 if kind in "pu" else 2, statement))
        for k, (_name, create) in enumerate(defs.indexes, start=len(defs.constraints)):
            statement = re.sub(
                r"^CREATE (UNIQUE )?INDEX \S+ ON (?:ONLY )?\S+ ",
                lambda m, k=k, table=table: (
                    f"CREATE {m.group(1) or ''}INDEX {_quote(table.temporary_name(k))} "
                    f"ON {_quote(table.shadow)} "
                ),
                create,
            )
            steps.append((1, statement))
    steps.sort(key=lambda step: step[0])
    progress.phase("index", len(steps), "indexes")
    for _order, statement in steps:
        cursor.execute(statement)
        progress.advance()
    report.seconds["index"] = time.perf_counter() - started


def _swap(cursor, tables, definitions, next_id: int) -> None:
    """Drop the live tables and rename the shadows (and their indexes) into place."""
    # Waiting behind a long-running reader must not hold the API up for long:
    # give up (and roll everything back) rather than queue every request.
    cursor.execute("SET LOCAL lock_timeout = '10s'")
    cursor.execute(
        sql.SQL("DROP TABLE {}").format(
            sql.SQL(", ").join(sql.Identifier(t.live) for t in reversed(tables))
        )
    )
    for table, defs in zip(tables, definitions, strict=True):
        cursor.execute(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                sql.Identifier(table.shadow), sql.Identifier(table.live)
            )
        )
        for k, (name, _kind, _definition) in enumerate(defs.constraints):
            cursor.execute(
                sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                    sql.Identifier(table.live),
                    sql.Identifier(table.temporary_name(k)),
                    sql.Identifier(name),
                )
            )
        for k, (name, _create) in enumerate(defs.indexes, start=len(defs.constraints)):
            cursor.execute(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    sql.Identifier(table.temporary_name(k)), sql.Identifier(name)
                )
            )
        for column in defs.identity:
            cursor.execute(
                sql.SQL(
                    "ALTER TABLE {} ALTER COLUMN {} ADD GENERATED BY DEFAULT AS IDENTITY "
                    "(START WITH {})"
                ).format(sql.Identifier(table.live), sql.Identifier(column), sql.Literal(next_id))
            )


def _quote(identifier: str) -> str:
    return sql.Identifier(identifier).as_string(connection.connection)


class _DatasetLock:
    """A session-level advisory lock: one dataset replacement per database at a time."""

    def __enter__(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [DATASET_LOCK_KEY])
            if not cursor.fetchone()[0]:
                raise DatasetLoadError(
                    "another generate_data is already replacing the data in this database; "
                    "wait for it to finish"
                )

    def __exit__(self, *exc_info) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [DATASET_LOCK_KEY])
        except DatabaseError:
            # The session is broken (say, by Ctrl-C in the middle of COPY):
            # closing it releases the lock, and the original error goes on.
            connection.close()
