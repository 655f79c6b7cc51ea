"""Racing writes on separate database connections: nothing lost, nothing resurrected, no 5xx.

Each request runs in a thread of its own (its own connection, as in a
threaded or multi-process server). To make an interleaving certain rather
than likely, a third connection (the "blocker") holds a row lock while the
requests start, and the test waits until PostgreSQL reports them waiting
for it before letting go: every request has then read what it read before
its first lock, in the order it queued.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection
from django.test import Client

from core.customers import services
from core.models import Address, AppUser, CustomerRelationship
from core.tests.api.test_writes import URL, payload
from core.tests.clients import api_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def editor() -> Client:
    return api_client("editor", read_only=False)


def open_session() -> psycopg.Connection:
    """A connection of the test's own to the test database (the blocker)."""
    params = connection.get_connection_params()
    keep = {"dbname", "host", "port", "user", "password", "sslmode"}
    return psycopg.connect(**{k: v for k, v in params.items() if k in keep and v})


def waiting_for_locks() -> int:
    with open_session() as probe:
        return probe.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()[0]


def wait_until_waiting(count: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while waiting_for_locks() < count:
        assert time.monotonic() < deadline, f"expected {count} requests waiting for a lock"
        time.sleep(0.02)


class Request(threading.Thread):
    """One API request on a thread (and connection) of its own."""

    def __init__(self, client: Client, method: str, path: str, body=None, **headers) -> None:
        super().__init__()
        self.client, self.method, self.path, self.body, self.headers = (
            client,
            method,
            path,
            body,
            headers,
        )
        self.status: int | None = None

    def run(self) -> None:
        try:
            kwargs = {"content_type": "application/json"} if self.body is not None else {}
            args = (self.path, self.body) if self.body is not None else (self.path,)
            response = getattr(self.client, self.method)(*args, **kwargs, **self.headers)
            self.status = response.status_code
        except Exception:
            # The test client re-raises what the view raised: a server's 500.
            self.status = 500
            raise
        finally:
            connection.close()

    def result(self) -> int:
        self.join(timeout=30)
        assert not self.is_alive(), "the request hung"
        return self.status


@contextmanager
def row_locked(sql: str, *params) -> Iterator[psycopg.Connection]:
    """Hold ``SELECT … FOR UPDATE`` on a row until the block ends, then commit."""
    with open_session() as blocker:
        blocker.execute(sql, params)
        yield blocker
        blocker.commit()


def customer_locked(pk: int):
    return row_locked("SELECT id FROM core_appuser WHERE id = %s FOR UPDATE", pk)


def new_customer(editor: Client, customer_id: str = "RACE") -> int:
    response = editor.post(URL, payload(customer_id=customer_id), content_type="application/json")
    assert response.status_code == 201
    return response.json()["id"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"first_name": "Changed"}, {"last_name": "Changed"}),
        ({"first_name": "Changed"}, {"address": {"street": "Changed"}}),
        ({"phone_number": "+1 555 0100"}, {"relationship": {"points": 7}}),
    ],
)
def test_two_patches_of_different_fields_both_keep_their_change(editor, first, second):
    pk = new_customer(editor)
    with customer_locked(pk):
        requests = [Request(editor, "patch", f"{URL}{pk}/", body) for body in (first, second)]
        for request in requests:
            request.start()
        wait_until_waiting(2)
    assert [request.result() for request in requests] == [200, 200]
    row = editor.get(f"{URL}{pk}/").json()
    for change in (first, second):
        for name, value in change.items():
            if isinstance(value, dict):
                assert {k: row[name][k] for k in value} == value, row
            else:
                assert row[name] == value, row


@pytest.mark.parametrize(
    "patch",
    [{"first_name": "Back"}, {"first_name": "Back", "relationship": {"points": 5}}],
)
def test_a_patch_queued_behind_a_delete_is_a_404_and_resurrects_nothing(editor, patch):
    pk = new_customer(editor)
    with customer_locked(pk):
        delete = Request(editor, "delete", f"{URL}{pk}/")
        delete.start()
        wait_until_waiting(1)
        change = Request(editor, "patch", f"{URL}{pk}/", patch)
        change.start()
        wait_until_waiting(2)
    assert delete.result() == 204
    assert change.result() == 404
    assert not AppUser.objects.filter(pk=pk).exists()
    assert not CustomerRelationship.objects.exists()
    assert not Address.objects.exists()


def test_a_delete_queued_behind_a_patch_deletes_everything(editor):
    pk = new_customer(editor)
    with customer_locked(pk):
        change = Request(
            editor, "patch", f"{URL}{pk}/", {"address": {"street": "X"}, "relationship": {}}
        )
        change.start()
        wait_until_waiting(1)
        delete = Request(editor, "delete", f"{URL}{pk}/")
        delete.start()
        wait_until_waiting(2)
    assert (change.result(), delete.result()) == (200, 204)
    assert (AppUser.objects.count(), Address.objects.count()) == (0, 0)
    assert not CustomerRelationship.objects.exists()


def patch_deadlocked(editor: Client, pk: int, body: dict) -> int:
    """The status of a PATCH of the customer and their record that deadlocks
    with a writer locking the record, then the customer: the reverse of the
    services' order. The request, waiting first, detects the deadlock and is
    the transaction PostgreSQL aborts."""
    with row_locked(
        "SELECT appuser_id FROM core_customerrelationship WHERE appuser_id = %s FOR UPDATE", pk
    ) as blocker:
        blocker.execute("SET LOCAL deadlock_timeout = '30s'")
        change = Request(editor, "patch", f"{URL}{pk}/", body)
        change.start()
        wait_until_waiting(1)
        blocker.execute("SELECT id FROM core_appuser WHERE id = %s FOR UPDATE", [pk])
    return change.result()


def test_a_deadlock_with_another_writer_is_retried(editor):
    """The service runs the aborted transaction again, after the blocker, and succeeds."""
    pk = new_customer(editor)
    body = {"first_name": "Retried", "relationship": {"points": 9}}
    assert patch_deadlocked(editor, pk, body) == 200
    row = editor.get(f"{URL}{pk}/").json()
    assert (row["first_name"], row["relationship"]["points"]) == ("Retried", 9)


def test_a_deadlock_that_persists_is_a_409_and_writes_nothing(editor, monkeypatch):
    monkeypatch.setattr(services, "WRITE_ATTEMPTS", 1)
    pk = new_customer(editor)
    before = editor.get(f"{URL}{pk}/").json()
    body = {"first_name": "Lost", "relationship": {"points": 9}}
    assert patch_deadlocked(editor, pk, body) == 409
    assert editor.get(f"{URL}{pk}/").json() == before


def test_the_old_lock_order_deadlock_is_gone(editor):
    """A writer that locks the customer, then the record (the services'
    order) no longer deadlocks with a change of both: the change waits for
    the customer first."""
    pk = new_customer(editor)
    with customer_locked(pk) as blocker:
        blocker.execute("SET LOCAL deadlock_timeout = '30s'")
        change = Request(
            editor, "patch", f"{URL}{pk}/", {"first_name": "Both", "relationship": {"points": 3}}
        )
        change.start()
        wait_until_waiting(1)
        blocker.execute(
            "SELECT appuser_id FROM core_customerrelationship WHERE appuser_id = %s FOR UPDATE",
            [pk],
        )
    assert change.result() == 200


def test_random_races_of_patch_and_delete_keep_every_rule(editor):
    """No lock held by the test: twenty rounds of a PATCH and a DELETE
    released together, at random offsets. Whatever the order, no 5xx, a
    deleted customer stays deleted, and nothing is left behind."""
    rng = random.Random(16)
    for round_ in range(20):
        pk = new_customer(editor, f"R{round_}")

        class Racer(Request):
            go = threading.Barrier(2)

            def run(self) -> None:
                self.go.wait(timeout=10)
                time.sleep(rng.random() * 0.01)
                super().run()

        change = Racer(
            editor, "patch", f"{URL}{pk}/", {"first_name": "Z", "relationship": {"points": 1}}
        )
        delete = Racer(editor, "delete", f"{URL}{pk}/")
        change.start()
        delete.start()
        statuses = (change.result(), delete.result())
        assert statuses in {(200, 204), (404, 204)}, statuses
        assert not AppUser.objects.filter(pk=pk).exists()
    assert not CustomerRelationship.objects.exists()
    assert not Address.objects.exists()


@pytest.mark.parametrize(("sqlstate", "runs"), [("40001", 2), ("40P01", 2), ("40003", 1)])
def test_only_a_transaction_postgresql_rolled_back_is_run_again(db, sqlstate, runs):
    """A serialization failure or a deadlock is run again; 'statement completion
    unknown' (40003) may have committed, and is not."""
    calls = []

    @services.write_transaction
    def service() -> None:
        calls.append(1)
        if len(calls) == 1:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{sqlstate}'; END $$"
                )

    if runs == 1:
        with pytest.raises(Exception, match="raised"):
            service()
    else:
        service()
    assert len(calls) == runs
