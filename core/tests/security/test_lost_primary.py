"""A primary that became a standby (or went away) under the API: a JSON 503 with
Retry-After, never a 500; its connection is discarded, pooled or not, so the next
request connects anew; a token read a while ago still works while the primary
cannot be read. (A real failover under load: crm/tests/test_failover.py.)

A session with ``default_transaction_read_only`` refuses every write with the
very error a demoted primary gives (SQLSTATE 25006), while answering
``SELECT 1`` as a standby does.
"""

from __future__ import annotations

import os
import time

import pytest
from django.db import InternalError, connection
from django.db.utils import ConnectionHandler

from core.dataset.loader import customer_dataset_replace
from core.tests.clients import api_client
from crm.postgres.config import databases
from crm.tests.processes import table_locked

URL = "/api/users/"


def new_customer(customer_id: str) -> dict:
    return {
        "first_name": "Fay",
        "last_name": "Lover",
        "gender": "f",
        "customer_id": customer_id,
        "phone_number": "+43 1 555",
        "address": {
            "street": "Ring",
            "street_number": "1",
            "city_code": "1010",
            "city": "Vienna",
            "country": "Austria",
        },
    }


def turn_into_standby(wrapper) -> None:
    """The session now refuses writes as a standby does (25006)."""
    with wrapper.cursor() as cursor:
        cursor.execute("SET default_transaction_read_only = on")


@pytest.mark.django_db(transaction=True)
def test_a_write_on_a_primary_turned_standby_is_a_json_503_and_its_connection_is_dropped():
    writer = api_client("failover-writer", read_only=False)
    assert writer.post(URL, new_customer("LP-0"), content_type="application/json").status_code
    turn_into_standby(connection)

    refused = writer.post(URL, new_customer("LP-1"), content_type="application/json")

    assert refused.status_code == 503
    assert refused["Content-Type"] == "application/json"
    assert refused["Retry-After"] == "5"
    assert "nothing was written" in refused.json()["detail"]
    # What the end of a request does (Django's request_finished; the test
    # client leaves it out): Django alone would keep this connection, which
    # answers SELECT 1, and every later write would fail the same way.
    connection.close_if_unusable_or_obsolete()
    assert connection.connection is None
    created = writer.post(URL, new_customer("LP-1"), content_type="application/json")
    assert created.status_code == 201, created.content


@pytest.mark.django_db(transaction=True)
def test_a_pooled_connection_to_a_standby_never_goes_back_to_the_pool():
    environ = {**os.environ, **connection.child_environment(), "DATABASE_POOL": "1"}
    pooled = ConnectionHandler(
        {"default": databases(environ, statement_timeout_ms=2000)["default"]}
    )["default"]
    try:
        turn_into_standby(pooled)
        with pytest.raises(InternalError), pooled.cursor() as cursor:
            cursor.execute("CREATE TABLE crm_lost_primary_probe (id int)")
        pooled.close_if_unusable_or_obsolete()
        assert pooled.connection is None
        assert pooled.pool.get_stats().get("returns_bad", 0) == 1, "closed, then discarded"
        for _ in range(4):  # whichever connection the pool hands out next
            with pooled.cursor() as cursor:
                cursor.execute("SHOW default_transaction_read_only")
                assert cursor.fetchone()[0] == "off"
            pooled.close()
    finally:
        pooled.close()
        pooled.close_pool()


@pytest.mark.django_db(transaction=True)
def test_a_known_token_still_works_past_its_cache_time_while_the_primary_cannot_be_read(
    settings,
):
    customer_dataset_replace(n=20, chunk=20, seed=3)
    settings.CRM_TOKEN_CACHE_SECONDS = 1
    settings.CRM_LOCK_TIMEOUT_MS = 200
    known, unknown = api_client("known"), api_client("unknown")
    assert known.get(URL).status_code == 200  # its token read and cached
    time.sleep(1.1)
    # Tokens are read from the primary; a lock it cannot get within the lock
    # timeout is a database error like any other.
    with table_locked("core_apitoken"):
        assert known.get(URL).status_code == 200, "the last reading stands in"
        refused = unknown.get(URL)
    assert refused.status_code == 503, "a token never read before cannot be checked"
    assert refused["Retry-After"] == "5"
