"""The planning sample: its look-ups agree with numpy's plain ones, and it is
read under its own limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import psycopg
import pytest
from django.db import OperationalError, connection
from hypothesis import given
from hypothesis import strategies as st

from core.customers.sample import TABLE, ListSample, read_sample

NAMES = ["Smith", "Smithson", "Müller", "O'Brien", "", "Zoë", "smith"]


@given(
    column=st.lists(st.sampled_from(NAMES), min_size=1, max_size=60),
    values=st.lists(st.sampled_from([*NAMES, "Nobody"]), max_size=5),
)
def test_isin_finds_the_rows_numpy_finds(column, values):
    sample = ListSample(
        rows=1000, columns={"id": np.arange(len(column)), "last_name": np.array(column)}
    )
    expected = np.isin(np.array(column), np.array(values, dtype=str))
    assert (sample.isin("last_name", values) == expected).all()
    # Asked again, from the positions it keeps.
    assert (sample.isin("last_name", values) == expected).all()


def _held_for(seconds: float, locked: threading.Event) -> None:
    """Hold the read table's strongest lock for ``seconds`` from another session."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params) as other:
        other.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
        locked.set()
        time.sleep(seconds)


@contextmanager
def table_locked_for(seconds: float) -> Iterator[None]:
    locked = threading.Event()
    holder = threading.Thread(target=_held_for, args=(seconds, locked))
    holder.start()
    assert locked.wait(10)
    try:
        yield
    finally:
        holder.join()


def session_limits(statement: str, lock: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, false)", [statement])
        cursor.execute("SELECT set_config('lock_timeout', %s, false)", [lock])


def statement_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return cursor.fetchone()[0]


def test_the_sample_is_read_past_the_requests_statement_timeout(db):
    """A read from disk takes seconds (tunables.SAMPLE_READ_TIMEOUT_SECONDS):
    under a request's limit it was cancelled, and a cold worker's first
    request read the sample and got a 503. Waiting for a lock counts against
    a statement timeout, so a lock held past the session's limit stands in
    for a slow disk."""
    session_limits("200ms", "0")
    with table_locked_for(0.6):
        sample = read_sample("default")
    assert sample.size == 0
    assert statement_timeout() == "200ms"


def test_a_sample_read_that_fails_leaves_the_open_transaction_usable(db):
    """The test's transaction is open, as a request's may be when it reads
    the sample on first use: a failed read rolls back to its savepoint, and
    the request's next statement runs under the request's own limit."""
    session_limits("200ms", "100ms")
    with table_locked_for(0.6), pytest.raises(OperationalError):
        read_sample("default")
    assert statement_timeout() == "200ms"
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
