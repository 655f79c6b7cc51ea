"""One user cannot take every worker: at most CRM_USER_CONCURRENCY of its requests
are served at once per machine, and the rest are refused at once."""

from __future__ import annotations

import concurrent.futures
import time

import pytest
from django.contrib.auth import get_user_model

from bench import servers
from core.dataset.loader import customer_dataset_replace
from core.security import local_slots
from core.security.api_users import api_user_create
from core.tests.clients import api_client
from crm.tests.http_client import call
from crm.tests.processes import needs_programs, table_locked

#: A heavy request (500 rows sorted by a joined column), made slow by a lock the
#: test holds, so that the test depends on no machine's speed.
HEAVY = "/api/users/?ordering=address__city&page_size=500&page=1"


@pytest.mark.django_db(transaction=True)
@needs_programs("nginx")
def test_a_user_with_many_slow_requests_leaves_a_worker_for_everyone_else(tmp_path):
    customer_dataset_replace(n=200, chunk=200, seed=1)
    heavy = api_user_create(username="heavy", read_only=True)
    light = api_user_create(username="light", read_only=True)
    with (
        servers.serving_stack(
            tmp_path,
            secret_key="w" * 64,
            token=light,
            workers=3,
            # The heavy user's requests wait on a lock, as long as the test holds it.
            extra_env={
                "CRM_USER_CONCURRENCY": "2",  # the default with three workers
                "CRM_LOCK_TIMEOUT_MS": "0",
                "CRM_STATEMENT_TIMEOUT_MS": "30000",
            },
        ) as stack,
        concurrent.futures.ThreadPoolExecutor(8) as pool,
    ):
        with table_locked():
            futures = [
                pool.submit(call, stack.url, HEAVY, token=heavy, timeout=60) for _ in range(8)
            ]
            deadline = time.monotonic() + 30
            while sum(f.done() for f in futures) < 6:
                assert time.monotonic() < deadline, "the heavy user's requests all wait"
                time.sleep(0.1)
            refused = [f.result() for f in futures if f.done()]
            # Another user, meanwhile (its request reads no customer).
            other = call(stack.url, "/api/schema/?format=json", token=light, timeout=15)
        answers = [f.result() for f in futures]
    assert [a.status for a in refused] == [429] * 6
    assert "the most it serves one user at once" in refused[0].json()["detail"]
    assert refused[0].headers["Retry-After"] == "1"
    assert other.status == 200
    assert sorted(a.status for a in answers) == [200] * 2 + [429] * 6


@pytest.mark.django_db
def test_a_users_slot_is_taken_per_request_and_given_back_with_the_response(settings):
    settings.CRM_USER_CONCURRENCY = 1
    customer_dataset_replace(n=10, chunk=10, seed=1)
    client = api_client("one-at-a-time")
    user = get_user_model().objects.get(username="one-at-a-time")
    held = local_slots.take(f"user-{user.pk}", 1)  # as a request under way elsewhere
    try:
        assert client.get("/api/users/").status_code == 429
    finally:
        held.release()
    assert [client.get("/api/users/").status_code for _ in range(3)] == [200] * 3
    assert api_client("another").get("/api/users/").status_code == 200
