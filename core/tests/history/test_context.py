"""Who wrote a change: the context is the transaction's own, set with each
write statement; it holds for that transaction behind PgBouncer in
transaction mode and never reaches the next one on the same server connection."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection, transaction

from bench import servers
from core.dataset.loader import customer_dataset_replace
from core.history.context import SET_CONTEXT, Source, Writer, current_writer, writing_as
from core.models import CustomerRelationship, HistoryEvent
from core.tests.clients import api_client
from crm.tests.processes import needs_programs


def newest(count: int = 1) -> list[HistoryEvent]:
    return list(HistoryEvent.objects.order_by("-id")[:count])


@pytest.mark.django_db
def test_a_command_s_writes_carry_its_context():
    customer_dataset_replace(n=5, chunk=5, seed=1)
    with writing_as(Writer(Source.COMMAND, actor=None, request_id="job-7")):
        CustomerRelationship.objects.filter(pk=1).update(points=12345)
    (event,) = newest()
    assert (event.source, event.request_id, event.actor_id) == (Source.COMMAND, "job-7", None)
    assert current_writer() is None


@pytest.mark.django_db
def test_a_reading_request_sets_no_context_and_a_writing_one_forgets_it(settings):
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": None}
    customer_dataset_replace(n=5, chunk=5, seed=1)
    writer = api_client("ctx-writer", read_only=False)
    assert (
        writer.patch(
            "/api/users/2/", {"first_name": "Ctx"}, content_type="application/json"
        ).status_code
        == 200
    )
    with connection.cursor() as cursor:
        # Still in the test's transaction, after the request: nothing left behind.
        cursor.execute("SELECT current_setting('crm.source', true)")
        assert cursor.fetchone()[0] in ("", None)
        cursor.execute("UPDATE core_appuser SET first_name = 'After' WHERE id = 2")
    (event,) = newest()
    assert event.source == Source.DATABASE


@pytest.mark.django_db(transaction=True)
@needs_programs("pgbouncer")
def test_the_context_holds_for_its_transaction_behind_pgbouncer_and_never_leaks(tmp_path):
    customer_dataset_replace(n=5, chunk=5, seed=1)
    role, port = servers.pooled_role(), servers.free_port()
    # One server connection for every client: each transaction gets the one
    # the previous client's transaction used.
    pooler = servers.start_pgbouncer(tmp_path / "pgbouncer", port, roles=[role], pool_size=1)
    dsn = f"host=127.0.0.1 port={port} user={role} dbname={connection.settings_dict['NAME']}"
    try:
        with psycopg.connect(dsn) as first, psycopg.connect(dsn) as second:
            writer = Writer(Source.API, actor=42, request_id="req-pooled")
            with first.transaction():
                backend = first.execute("SELECT pg_backend_pid()").fetchone()[0]
                first.execute(SET_CONTEXT.rstrip("; "), writer.settings())
                first.execute(
                    "UPDATE core_customerrelationship SET points = points + 1000 "
                    "WHERE appuser_id = 1"
                )
                first.execute(
                    "UPDATE core_customerrelationship SET points = points + 1000 "
                    "WHERE appuser_id = 2"
                )
            with second.transaction():
                assert second.execute("SELECT pg_backend_pid()").fetchone()[0] == backend
                assert second.execute("SELECT current_setting('crm.actor', true)").fetchone()[
                    0
                ] in ("", None)
                second.execute(
                    "UPDATE core_customerrelationship SET points = points + 1000 "
                    "WHERE appuser_id = 3"
                )
    finally:
        pooler.terminate()
        pooler.wait(10)
    third, second_write, first_write = newest(3)
    for event in (first_write, second_write):
        assert (event.source, event.actor_id, event.request_id) == (Source.API, 42, "req-pooled")
    assert (third.source, third.actor_id, third.request_id) == (Source.DATABASE, None, None)


@pytest.mark.django_db
def test_a_write_returning_rows_still_returns_them_behind_the_context():
    """The context's SELECT comes first in the statement's text: Django reads
    the write's own result (INSERT … RETURNING id, an UPDATE's row count)."""
    customer_dataset_replace(n=5, chunk=5, seed=1)
    with writing_as(Writer(Source.COMMAND)), transaction.atomic():
        updated = CustomerRelationship.objects.filter(pk__in=[1, 2, 3]).update(points=7)
        record = CustomerRelationship.objects.get(pk=4)
        record.delete()
        created = CustomerRelationship.objects.create(appuser_id=4, points=8)
    assert updated == 3
    assert created.pk == 4
