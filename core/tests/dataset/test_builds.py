"""Build steps side by side on real connections: prerequisites, lock conflicts, failures."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.db import connection

from core.dataset.builds import BuildFailed, BuildPool, SerialBuilds, Step
from core.dataset.sessions import separate_connection

pytestmark = pytest.mark.django_db(transaction=True)

#: A step that should have run beside another fails within this, not never.
SETTINGS = {"application_name": "generate_data", "statement_timeout": "10s"}


@pytest.fixture
def sequences() -> Iterator[None]:
    """Sequences the steps signal each other through (nextval is not transactional)."""
    names = ("rendezvous", "first_done", "loaded")
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f"CREATE SEQUENCE {name}")
    yield
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f"DROP SEQUENCE {name}")


def run(steps: list[Step], jobs: int = 2, done: tuple[str, ...] = ()) -> BuildPool:
    pool = BuildPool(steps, separate_connection, jobs, SETTINGS)
    try:
        for prerequisite in done:
            pool.done(prerequisite)
        pool.finish()
    finally:
        pool.close()
    return pool


def rendezvous(parties: int) -> str:
    """Returns once ``parties`` statements like it are running at the same time."""
    return (
        "DO $$ BEGIN PERFORM nextval('rendezvous'); "
        f"WHILE (SELECT last_value FROM rendezvous) < {parties} LOOP "
        "PERFORM pg_sleep(0.01); END LOOP; END $$"
    )


def alone(key: int = 4242) -> str:
    """Fails if another statement like it runs at the same time."""
    return (
        f"DO $$ BEGIN IF NOT pg_try_advisory_lock({key}) THEN RAISE EXCEPTION 'overlap'; END IF; "
        f"PERFORM pg_sleep(0.2); PERFORM pg_advisory_unlock({key}); END $$"
    )


def fails_unless(sequence: str) -> str:
    return (
        f"DO $$ BEGIN IF NOT (SELECT is_called FROM {sequence}) THEN "
        f"RAISE EXCEPTION 'ran before {sequence}'; END IF; END $$"
    )


def test_index_builds_on_one_table_run_side_by_side(sequences):
    steps = [Step(f"index {k}", "index", rendezvous(3), shares=frozenset({"t"})) for k in range(3)]
    pool = run(steps, jobs=3)
    assert pool.finished == 3
    assert pool.times.busy["index"] > 0


def test_steps_that_lock_a_table_never_overlap_with_others_on_it(sequences):
    steps = [
        Step("analyze", "analyze", alone(), locks=frozenset({"t"})),
        Step("foreign key", "foreign key", alone(), locks=frozenset({"t", "u"})),
        Step("index", "index", alone(), shares=frozenset({"t"})),
        # Another table's build may run beside them all.
        Step("other index", "index", "SELECT pg_sleep(0.1)", shares=frozenset({"v"})),
    ]
    assert run(steps, jobs=4).finished == 4


def dependent_steps(first: str) -> list[Step]:
    """``first``, a step after it, and a step after the outside prerequisite
    "copy t": the later ones fail if they run too early, and would be picked
    first by priority alone."""
    return [
        Step("first", "index", first, priority=1),
        Step(
            "second", "analyze", fails_unless("first_done"), after=frozenset({"first"}), priority=9
        ),
        Step(
            "after load", "index", fails_unless("loaded"), after=frozenset({"copy t"}), priority=9
        ),
    ]


def test_a_step_waits_for_its_prerequisites(sequences):
    steps = dependent_steps("SELECT pg_sleep(0.3), nextval('first_done')")
    pool = BuildPool(steps, separate_connection, 3, SETTINGS)
    try:
        pool.check()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.3), nextval('loaded')")
        pool.done("copy t")
        pool.finish()
    finally:
        pool.close()
    assert pool.finished == 3


def test_a_failure_cancels_the_other_steps_and_names_the_statement(sequences):
    steps = [
        Step("slow", "index", "SELECT pg_sleep(30)", priority=9),
        Step("broken", "index", "CREATE INDEX nope ON no_such_table (x)", priority=1),
    ]
    with pytest.raises(BuildFailed, match="no_such_table"):
        run(steps)
    # Its connection is closed when run() returns; the server process behind
    # it may still be listed for a moment while it exits. The uncancelled
    # step would run on for 30 s.
    deadline = time.monotonic() + 5
    while sessions_sleeping() > 0:
        assert time.monotonic() < deadline, "the slow step was not cancelled"
        time.sleep(0.1)


def sessions_sleeping() -> int:
    """The generate_data sessions of this database whose statement is the slow step's."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'generate_data' AND datname = current_database() "
            "AND query LIKE '%%pg_sleep(30)%%'"
        )
        return cursor.fetchone()[0]


def workers_are(expected: int) -> str:
    return (
        "DO $$ BEGIN IF current_setting('max_parallel_maintenance_workers')::int <> "
        f"{expected} THEN RAISE EXCEPTION 'parallel workers: %', "
        "current_setting('max_parallel_maintenance_workers'); END IF; END $$"
    )


def test_the_last_build_standing_gets_the_idle_connections_as_parallel_workers(sequences):
    assert run([Step("last", "index", workers_are(2), parallel=True)], jobs=3).finished == 1
    # Not while other work runs, nor for steps that cannot use them.
    side_by_side = f"{workers_are(0)}; {rendezvous(2)}"
    busy = [Step(f"index {k}", "index", side_by_side, parallel=True) for k in range(2)]
    assert run(busy, jobs=2).finished == 2
    assert run([Step("analyze", "analyze", workers_are(0))], jobs=2).finished == 1


def test_serial_builds_run_in_dependency_order(sequences):
    steps = dependent_steps("SELECT nextval('first_done')")
    with connection.cursor() as cursor:
        builds = SerialBuilds(steps, cursor)
        cursor.execute("SELECT nextval('loaded')")
        builds.done("copy t")
        reported = []
        builds.finish(reported.append)
    assert reported == [1, 2, 3]


def test_every_build_connection_has_the_loads_settings(sequences):
    settings = {**SETTINGS, "maintenance_work_mem": "321MB", "synchronous_commit": "off"}
    check = (
        "DO $$ BEGIN IF current_setting('maintenance_work_mem') <> '321MB' "
        "OR current_setting('synchronous_commit') <> 'off' "
        "THEN RAISE EXCEPTION 'settings not applied'; END IF; END $$"
    )
    steps = [Step(f"check {k}", "index", f"{check}; {rendezvous(2)}") for k in range(2)]
    pool = BuildPool(steps, separate_connection, 2, settings)
    try:
        pool.finish()
    finally:
        pool.close()
    assert pool.finished == 2
