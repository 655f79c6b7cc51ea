"""generate_data killed with SIGKILL in each phase, as a real process, then tidied up.

The child loads enough rows for each phase to last, and the test kills it
the moment the server shows it there: its COPY into the first shadow (nothing
committed yet: the list's read table), its COPY into a later one (a shadow
committed), an index
build running, an ANALYZE or a foreign key waiting on a lock this test holds,
and the swap waiting for a reader. Throughout, the test reads a live table in
an open transaction, so the swap can never commit before the kill. Then the
next ``migrate`` or ``generate_data``, run as the user would, must leave the
previous data (or the new, for generate_data), every index and constraint,
and no stray table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from core.dataset.sessions import separate_connection
from core.tests.read_table import drift
from crm.tests.processes import REPO

from .snapshots import schema_snapshot, stray_tables, table_digest
from .test_generation import AS_OF

pytestmark = pytest.mark.django_db(transaction=True)

#: Rows of the killed load: enough that a phase the test only watches for
#: (a COPY, an index build) lasts a while.
CHILD_ROWS = 80_000
#: ...and when a lock the test holds from the start keeps the child in its
#: phase, as few as make a load: the rows before it are only time spent
#: getting there. (The locks on shadow tables are taken once the table
#: exists: the phase must last until the test sees it.)
HELD_CHILD_ROWS = 5_000
PREVIOUS = {"n": 1500, "seed": 1, "as_of": AS_OF}


@dataclass
class Server:
    """This test's view of the server: a monitor, and connections that hold locks."""

    monitor: psycopg.Connection = field(default_factory=separate_connection)
    holders: list[psycopg.Connection] = field(default_factory=list)

    def hold(self, statement: str) -> psycopg.Connection:
        """Run ``statement`` in a transaction that stays open (its locks held)."""
        holder = separate_connection()
        holder.autocommit = False
        self.holders.append(holder)
        holder.execute(statement)
        return holder

    def try_hold(self, statement: str) -> bool:
        """Take a lock on a shadow table once it exists (its load committed)."""
        try:
            self.hold(statement)
        except psycopg.errors.UndefinedTable:
            self.holders.pop().close()
            return False
        return True

    def running(self, pattern: str, waiting: bool = False) -> bool:
        """Is a generate_data session running a statement LIKE ``pattern``?"""
        return self.monitor.execute(
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'generate_data' "
            "AND datname = current_database() AND state = 'active' AND query LIKE %s "
            "AND (wait_event_type IS NOT DISTINCT FROM 'Lock') = %s",
            [pattern, waiting],
        ).fetchone()[0]

    def copying(self, shadow: str) -> bool:
        """Is the child's COPY into ``shadow`` (not committed: not in our catalog) under way?"""
        return self.monitor.execute(
            "SELECT count(*) > 0 FROM pg_stat_progress_copy p "
            "JOIN pg_stat_activity a ON a.pid = p.pid "
            "WHERE a.application_name = 'generate_data' AND a.datname = current_database() "
            "AND a.query LIKE %s "
            "AND p.tuples_processed > 0",
            [f'COPY "{shadow}"%'],
        ).fetchone()[0]

    def analyzed(self, shadow: str) -> bool:
        return self.monitor.execute(
            "SELECT count(*) > 0 FROM pg_stats WHERE tablename = %s", [shadow]
        ).fetchone()[0]

    def close(self) -> None:
        for conn in [*self.holders, self.monitor]:
            conn.close()


class KillPoint:
    """Where to kill: ``reached`` is polled until it says the child is there,
    and may take locks on the way."""

    #: How many customers the killed load generates.
    rows = CHILD_ROWS

    def __init__(self, server: Server) -> None:
        self.server = server

    def reached(self) -> bool:
        raise NotImplementedError


class FirstCopy(KillPoint):
    def reached(self) -> bool:
        return self.server.copying("core_customer_list__load")


class LaterCopy(KillPoint):
    def reached(self) -> bool:
        return self.server.copying("core_address__load")


class IndexBuild(KillPoint):
    def reached(self) -> bool:
        return self.server.running("CREATE %INDEX %__load%")


class Analyze(KillPoint):
    """A SHARE lock on the shadow blocks its ANALYZE, not its index builds."""

    locked = False

    def reached(self) -> bool:
        if not self.locked:
            self.locked = self.server.try_hold(
                "LOCK TABLE core_customerrelationship__load IN SHARE MODE"
            )
        return self.server.running("ANALYZE %core_customerrelationship__load%", waiting=True)


class ForeignKey(KillPoint):
    """The foreign key from the loyalty records to the customers waits on a
    ROW EXCLUSIVE lock on the records' shadow, taken once it is analysed; the
    customers' ANALYZE, which the key also waits for, is held back until then."""

    step = 0
    customers: psycopg.Connection | None = None

    def reached(self) -> bool:
        server = self.server
        if self.step == 0 and server.try_hold("LOCK TABLE core_appuser__load IN SHARE MODE"):
            self.customers = server.holders[-1]
            self.step = 1
        if self.step == 1 and server.analyzed("core_customerrelationship__load"):
            server.hold("LOCK TABLE core_customerrelationship__load IN ROW EXCLUSIVE MODE")
            self.customers.rollback()  # the customers may be analysed now
            self.step = 2
        return self.step == 2 and server.running(
            "ALTER TABLE %core_customerrelationship__load%FOREIGN KEY%", waiting=True
        )


class Swap(KillPoint):
    """The swap waits for the reader of a live table that the test holds throughout."""

    rows = HELD_CHILD_ROWS

    def reached(self) -> bool:
        return self.server.running("LOCK TABLE %", waiting=True)


KILL_POINTS: dict[str, Callable[[Server], KillPoint]] = {
    "copy": FirstCopy,
    "copy-after-a-commit": LaterCopy,
    "index": IndexBuild,
    "analyze": Analyze,
    "foreign-key": ForeignKey,
    "swap": Swap,
}


def kill_generate_data_at(point: Callable[[Server], KillPoint]) -> None:
    server = Server()
    # A reader of a live table: the swap waits for it, so the child cannot
    # replace the data before it is killed.
    server.hold("SELECT count(*) FROM core_address")
    where = point(server)
    child = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "manage.py"),
            "generate_data",
            "--n",
            str(where.rows),
            "--chunk",
            "20000",
            "--as-of",
            AS_OF.isoformat(),
        ],
        cwd=REPO,
        env={**os.environ, **connection.child_environment()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not where.reached():
            assert child.poll() is None, f"the child ended first: {child.stdout.read()}"
            assert time.monotonic() < deadline, "the child never got there"
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert child.returncode == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        server.close()


@pytest.mark.parametrize("then", ["migrate", "generate_data"])
@pytest.mark.parametrize("phase", list(KILL_POINTS))
def test_sigkill_in_any_phase_leaves_the_data_every_index_and_no_stray_table(
    reports_dir, phase, then
):
    call_command("generate_data", chunk=500, quiet=True, **PREVIOUS)
    before_rows, before_schema = table_digest(), schema_snapshot()

    kill_generate_data_at(KILL_POINTS[phase])

    # The next command, as the user would run it (in this process: a second
    # interpreter would only add its start-up to every case).
    if then == "migrate":
        call_command("migrate", verbosity=0)
    else:
        # The same data again: deterministic, so it must match.
        call_command("generate_data", chunk=500, quiet=True, **PREVIOUS)
    assert table_digest() == before_rows
    assert schema_snapshot() == before_schema
    assert stray_tables() == []
    assert drift() == [], "the read table is still the join of the three"
    # And loads work as before: nothing the killed one held is left behind.
    call_command("generate_data", n=100, chunk=100, quiet=True)
