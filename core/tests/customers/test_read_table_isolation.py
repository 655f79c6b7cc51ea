"""The read table stays the join whatever the isolation level of the writers:
two transactions on two real connections, their statements interleaved, each
at READ COMMITTED, REPEATABLE READ or SERIALIZABLE. A transaction may fail
to serialize (the services run it again); it may never leave a read row stale."""

from __future__ import annotations

import itertools
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as StillWaiting
from dataclasses import dataclass, field

import psycopg
import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.dataset.loader import customer_dataset_replace
from core.dataset.sessions import separate_connection
from core.tests.history_replay import addresses_now, listed, newest_event, replay_drift
from core.tests.read_table import drift

LEVELS = ("READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE")
#: How long a statement may take before it counts as waiting for the other
#: transaction's locks (then the other goes on).
WAITING_SECONDS = 0.3

serial = itertools.count()


class Transaction:
    """One transaction on a connection of its own, at ``level``, run by a
    thread of its own so that a statement waiting for a lock does not stop
    the other transaction."""

    def __init__(self, level: str) -> None:
        self.connection = separate_connection()
        self.connection.autocommit = False
        self.worker = ThreadPoolExecutor(max_workers=1)
        self.waiting: Future | None = None
        self.failed: BaseException | None = None
        self.run(f"SET TRANSACTION ISOLATION LEVEL {level}")
        # A lock wait ends the test, never hangs it; a deadlock is found fast.
        self.run("SET LOCAL lock_timeout = '5s'")
        self.run("SET LOCAL deadlock_timeout = '50ms'")

    def run(self, sql: str, params: list | None = None) -> None:
        """Send a statement (after the one still waiting, if any)."""

        def execute() -> None:
            if self.failed is None:
                try:
                    self.connection.execute(sql, params)
                except psycopg.Error as exc:
                    self.fail(exc)

        self.waiting = self.worker.submit(execute)
        try:
            self.waiting.result(WAITING_SECONDS)
        except StillWaiting:
            return

    def fail(self, exc: psycopg.Error) -> None:
        """A transaction may collide (class 40: serialization failure, deadlock)
        or break a key (class 23: a customer deleted meanwhile); anything else
        is a bug, raised."""
        if (exc.sqlstate or "")[:2] not in ("40", "23"):
            raise exc
        self.failed = exc

    def finish(self) -> Future:
        """Commit (or roll back what failed) once the statements sent are done:
        in the transaction's own thread, so that a commit waiting for the
        other transaction's locks does not keep the other from committing."""

        def commit() -> None:
            if self.failed is None:
                try:
                    self.connection.commit()
                except psycopg.Error as exc:
                    self.fail(exc)
            if self.failed is not None:
                self.connection.rollback()

        return self.worker.submit(commit)

    def close(self) -> None:
        self.worker.shutdown(cancel_futures=True)
        self.connection.close()


def end(*transactions: Transaction) -> None:
    """Commit the transactions in this order (each may wait for the other),
    and raise what a statement could not handle."""
    try:
        finishing = [transaction.finish() for transaction in transactions]
        for transaction, finished in zip(transactions, finishing, strict=True):
            finished.result(30)
            transaction.waiting.result(0)
    finally:
        for transaction in transactions:
            transaction.close()


# Statements over the first few customers, so that two transactions collide.
CUSTOMERS = st.integers(1, 6)


@dataclass(frozen=True)
class Step:
    sql: str
    params: list = field(default_factory=list)


def steps() -> st.SearchStrategy[Step]:
    label = st.builds(lambda: f"R{next(serial)}")
    return st.one_of(
        st.builds(lambda: Step("SELECT count(*) FROM core_appuser")),  # takes the snapshot
        st.builds(
            lambda c, n: Step("UPDATE core_appuser SET first_name = %s WHERE id = %s", [n, c]),
            CUSTOMERS,
            label,
        ),
        st.builds(
            lambda c, n: Step(
                "UPDATE core_address SET city = %s "
                "WHERE id = (SELECT address_id FROM core_appuser WHERE id = %s)",
                [n, c],
            ),
            CUSTOMERS,
            label,
        ),
        st.builds(
            lambda c, h: Step(
                "UPDATE core_appuser SET address_id = coalesce("
                "(SELECT address_id FROM core_appuser WHERE id = %s), address_id) WHERE id = %s",
                [h, c],
            ),
            CUSTOMERS,
            CUSTOMERS,
        ),
        st.builds(
            lambda c, p: Step(
                "UPDATE core_customerrelationship SET points = %s WHERE appuser_id = %s", [p, c]
            ),
            CUSTOMERS,
            st.integers(0, 1000),
        ),
        st.builds(
            lambda h, n: Step(
                "INSERT INTO core_appuser (first_name, last_name, gender, customer_id, "
                "phone_number, address_id, created, last_updated) VALUES ('New', %s, 'o', %s, "
                "'+1', coalesce((SELECT address_id FROM core_appuser WHERE id = %s), "
                "(SELECT min(id) FROM core_address)), now(), now())",
                [n, n, h],
            ),
            CUSTOMERS,
            label,
        ),
        st.builds(
            lambda c: Step(
                "INSERT INTO core_customerrelationship (appuser_id, points, created, "
                "last_activity) SELECT id, 7, created, created FROM core_appuser WHERE id = %s "
                "ON CONFLICT (appuser_id) DO UPDATE SET points = EXCLUDED.points + 1",
                [c],
            ),
            CUSTOMERS,
        ),
        st.builds(
            lambda c: Step("DELETE FROM core_customerrelationship WHERE appuser_id = %s", [c]),
            CUSTOMERS,
        ),
        st.builds(
            lambda c: Step(
                "WITH gone AS (DELETE FROM core_customerrelationship WHERE appuser_id = %s) "
                "DELETE FROM core_appuser WHERE id = %s",
                [c, c],
            ),
            CUSTOMERS,
        ),
    )


def interleave(first: list[Step], second: list[Step], order: list[bool]) -> list[tuple[int, Step]]:
    """The two transactions' steps, each in its own order, taken as ``order`` says."""
    queues = [list(first), list(second)]
    schedule = []
    for pick in order:
        which = int(pick) if queues[int(pick)] else int(not pick)
        if queues[which]:
            schedule.append((which, queues[which].pop(0)))
    schedule += [(0, s) for s in queues[0]] + [(1, s) for s in queues[1]]
    return schedule


def run(levels: tuple[str, str], schedule: list[tuple[int, Step]], commit_first: int) -> None:
    transactions = [Transaction(level) for level in levels]
    try:
        for which, step in schedule:
            transactions[which].run(step.sql, step.params)
    finally:
        end(transactions[commit_first], transactions[1 - commit_first])


@pytest.fixture
def loaded(transactional_db):
    customer_dataset_replace(n=12, chunk=12, seed=5)


@pytest.mark.parametrize("first", LEVELS)
@pytest.mark.parametrize("second", LEVELS)
def test_an_address_changed_while_a_customer_moves_in_is_listed_changed(loaded, first, second):
    """The red team's race: A takes its snapshot; B moves a customer to an
    address and commits; A changes that address and commits (or fails to
    serialize). The moved customer's row has the change either way."""
    mover, host = 1, 2
    starts, after = snapshot()
    a = Transaction(first)
    a.run("SELECT count(*) FROM core_appuser")
    b = Transaction(second)
    b.run(
        "UPDATE core_appuser SET address_id = (SELECT address_id FROM core_appuser WHERE id = %s) "
        "WHERE id = %s",
        [host, mover],
    )
    end(b)
    a.run(
        "UPDATE core_address SET city = 'RaceCity' "
        "WHERE id = (SELECT address_id FROM core_appuser WHERE id = %s)",
        [host],
    )
    end(a)
    assert b.failed is None
    assert drift() == []
    assert replay_drift(starts=starts, after=after) == []


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    levels=st.tuples(st.sampled_from(LEVELS), st.sampled_from(LEVELS)),
    first=st.lists(steps(), min_size=1, max_size=3),
    second=st.lists(steps(), min_size=1, max_size=3),
    order=st.lists(st.booleans(), min_size=6, max_size=6),
    commit_first=st.integers(0, 1),
)
def test_interleaved_writers_at_any_isolation_level_leave_the_read_table_the_join(
    loaded, levels, first, second, order, commit_first
):
    starts, after = snapshot()
    # Examples share the database: an address whose customers earlier
    # examples deleted is in no row of starts, and one may move in now.
    addresses = addresses_now()
    run(levels, interleave(first, second, order), commit_first)
    assert drift() == []
    # And the history: the events of the interleaving, replayed on the rows
    # (and addresses) before it, are the rows after it.
    assert replay_drift(starts=starts, after=after, addresses=addresses) == []


def snapshot() -> tuple[dict[int, dict | None], int]:
    """Every customer's row now, and where the events after it start."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM core_customer_list")
        customers = [pk for (pk,) in cursor.fetchall()]
    return {pk: listed(pk) for pk in customers}, newest_event()
