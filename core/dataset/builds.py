"""Index builds, constraints and ANALYZE of the shadow tables, side by side.

One ``CREATE INDEX`` uses one core (PostgreSQL's parallel builds help b-trees
and, since PostgreSQL 18, GIN, but leave the leader merging alone and scale
poorly on two cores). Several builds on the same table may run at once from
separate sessions: each takes a SHARE lock, which does not conflict with
itself. So the loader commits each shadow table as soon as it is loaded and
hands its build steps to :class:`BuildPool`, whose connections run them, the
most urgent ready step first, while the next table is still being copied.

A step starts when its prerequisites are done (a table's indexes before its
ANALYZE, both tables analysed before a foreign key between them) and when no
running step holds a conflicting lock on one of its tables: ANALYZE and
``ADD FOREIGN KEY`` take locks that conflict with the index builds and with
each other, so they would only wait, holding a connection idle. When a step
is the only work left, it may use PostgreSQL's parallel workers in place of
the idle connections.

:class:`SerialBuilds` runs the same steps one after another on the caller's
connection, for a load inside a transaction the caller owns (where other
sessions cannot see the shadow tables).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import psycopg


@dataclass(frozen=True)
class Step:
    """One statement of the build phase.

    ``shares`` are tables the step locks in a mode that its fellow steps
    also take (index builds: SHARE); ``locks`` are tables it must have to
    itself among the steps (ANALYZE, foreign keys, exclusion constraints).
    ``priority`` orders the ready steps, highest first: the steps others
    wait for (ANALYZE, foreign keys), then the costliest builds, so that the
    last ones to finish are short.
    """

    name: str
    kind: str  # "index", "constraint", "foreign key", "analyze"
    statement: str
    after: frozenset[str] = frozenset()
    shares: frozenset[str] = frozenset()
    locks: frozenset[str] = frozenset()
    priority: float = 1.0
    parallel: bool = False  # may use parallel maintenance workers


@dataclass
class StepTimes:
    """Seconds spent per kind of step, summed over connections, and the wall span."""

    busy: dict[str, float] = field(default_factory=dict)
    first_start: float | None = None
    last_end: float | None = None

    def record(self, kind: str, started: float, ended: float) -> None:
        self.busy[kind] = self.busy.get(kind, 0.0) + ended - started
        self.first_start = started if self.first_start is None else min(self.first_start, started)
        self.last_end = ended if self.last_end is None else max(self.last_end, ended)


class BuildFailed(Exception):
    """A build step failed; the message names the statement."""


class Builds:
    """Steps waiting for their prerequisites; what both ways of running them share."""

    def __init__(self, steps: Iterable[Step]) -> None:
        self.times = StepTimes()
        self.finished = 0
        self._pending: dict[str, Step] = {step.name: step for step in steps}
        self.total = len(self._pending)
        #: Prerequisites that are not steps (tables being loaded), announced by done().
        self._outside = set().union(*(s.after for s in self._pending.values())) - set(self._pending)
        self._done: set[str] = set()

    def done(self, prerequisite: str) -> None:
        """``prerequisite`` (a table being loaded) is done."""
        self._done.add(prerequisite)

    def check(self) -> None:
        """Raise the first failure, if a step failed."""

    def finish(self, report: Callable[[int], None] = lambda finished: None) -> None:
        """Run or wait for every step, calling ``report`` with the number finished so far."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop; nothing more runs."""
        self._pending.clear()

    def _ready(self) -> list[Step]:
        return [step for step in self._pending.values() if step.after <= self._done]

    def _record(self, step: Step, started: float, ended: float) -> None:
        self._done.add(step.name)
        self.finished += 1
        self.times.record(step.kind, started, ended)


class SerialBuilds(Builds):
    """The steps one at a time on the caller's cursor, in dependency order."""

    def __init__(self, steps: Iterable[Step], cursor) -> None:
        super().__init__(steps)
        self.cursor = cursor

    def finish(self, report: Callable[[int], None] = lambda finished: None) -> None:
        while self._pending:
            ready = self._ready()
            if not ready:
                raise BuildFailed(f"steps wait for each other: {sorted(self._pending)}")
            step = max(ready, key=lambda s: s.priority)
            del self._pending[step.name]
            started = time.perf_counter()
            self.cursor.execute(step.statement)
            self._record(step, started, time.perf_counter())
            report(self.finished)


class BuildPool(Builds):
    """``jobs`` connections of their own running the steps, each in autocommit.

    ``connect`` opens a connection; ``settings`` are SET on each one. Any
    failure cancels the running statements and is raised by :meth:`finish`
    (or :meth:`check`).
    """

    #: How often a waiting caller wakes up to report progress.
    POLL_SECONDS = 0.2

    def __init__(
        self,
        steps: Iterable[Step],
        connect: Callable[[], psycopg.Connection],
        jobs: int,
        settings: Mapping[str, str],
    ) -> None:
        super().__init__(steps)
        self.connect = connect
        self.settings = settings
        self._running: dict[str, Step] = {}
        self._error: BaseException | None = None
        self._condition = threading.Condition()
        self._connections: list[psycopg.Connection] = []
        self._threads = [
            threading.Thread(target=self._work, name=f"generate_data build {k}", daemon=True)
            for k in range(jobs)
        ]
        for thread in self._threads:
            thread.start()

    # -- the caller's side ---------------------------------------------------

    def done(self, prerequisite: str) -> None:
        with self._condition:
            super().done(prerequisite)
            self._condition.notify_all()

    def check(self) -> None:
        with self._condition:
            if self._error is not None:
                raise self._error

    def finish(self, report: Callable[[int], None] = lambda finished: None) -> None:
        with self._condition:
            while (self._pending or self._running) and self._error is None:
                self._condition.wait(self.POLL_SECONDS)
                report(self.finished)
        self.check()
        report(self.finished)

    def close(self) -> None:
        """Stop: cancel whatever runs, close the connections, join the threads."""
        with self._condition:
            if self._error is None and (self._pending or self._running):
                self._error = BuildFailed("cancelled")
            super().close()
            self._condition.notify_all()
        self._cancel_running()
        for thread in self._threads:
            thread.join()

    # -- the workers' side ---------------------------------------------------

    def _work(self) -> None:
        conn = None
        try:
            try:
                conn = self.connect()
                with self._condition:
                    self._connections.append(conn)
                for name, value in self.settings.items():
                    conn.execute("SELECT set_config(%s, %s, false)", [name, value])
            except psycopg.Error as exc:
                raise BuildFailed(f"cannot open a connection for the builds: {exc}") from exc
            while (taken := self._take()) is not None:
                step, workers = taken
                started = time.perf_counter()
                conn.execute(
                    "SELECT set_config('max_parallel_maintenance_workers', %s, false)",
                    [str(workers)],
                )
                try:
                    conn.execute(step.statement)
                except psycopg.Error as exc:
                    raise BuildFailed(f"{exc} (in: {step.statement})") from exc
                with self._condition:
                    del self._running[step.name]
                    self._record(step, started, time.perf_counter())
                    self._condition.notify_all()
        except BaseException as exc:  # handed to the caller
            with self._condition:
                if self._error is None:
                    self._error = exc
                self._condition.notify_all()
            self._cancel_running(but=conn)
        finally:
            if conn is not None:
                conn.close()

    def _take(self) -> tuple[Step, int] | None:
        """The most urgent step that may start now (and its parallel workers), or
        None when there is nothing left to do."""
        with self._condition:
            while self._error is None and self._pending:
                ready = [step for step in self._ready() if self._unlocked(step)]
                if ready:
                    step = max(ready, key=lambda s: s.priority)
                    del self._pending[step.name]
                    self._running[step.name] = step
                    return step, self._spare_workers(step, len(ready))
                self._condition.wait()
            return None

    def _unlocked(self, step: Step) -> bool:
        """No running step holds a lock that conflicts with ``step``'s."""
        return not any(
            step.locks & (other.locks | other.shares) or step.shares & other.locks
            for other in self._running.values()
        )

    def _spare_workers(self, step: Step, ready: int) -> int:
        """Idle connections this step may use as parallel workers instead: only
        when nothing else can start now and every table has been loaded."""
        if not step.parallel or ready > 1 or not self._outside <= self._done:
            return 0
        return len(self._threads) - len(self._running)

    def _cancel_running(self, but: psycopg.Connection | None = None) -> None:
        """Cancel the statement each connection (``but`` one) runs, if any."""
        with self._condition:
            connections = [c for c in self._connections if c is not but]
        for conn in connections:
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe()
