"""One user cannot take every worker: at most CRM_USER_CONCURRENCY of its requests
are served at once per machine, and the rest are refused at once."""

from __future__ import annotations

import collections
import concurrent.futures
import http.client
import time
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

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


@pytest.fixture
def capped_stack(tmp_path):
    """Three workers, one user served one request at a time."""
    customer_dataset_replace(n=200, chunk=200, seed=1)
    probe = api_user_create(username="probe", read_only=True)
    with servers.serving_stack(
        tmp_path,
        secret_key="w" * 64,
        token=probe,
        workers=3,
        extra_env={"CRM_USER_CONCURRENCY": "1"},
    ) as stack:
        yield stack


@pytest.mark.django_db(transaction=True)
@needs_programs("nginx")
def test_a_sequential_client_is_never_refused_by_its_own_cap(capped_stack):
    """The slot went back when the server closed the response, after nginx
    had passed it on: the client's next request could reach another worker
    first (11 of 300 refused with two loops). One loop on one keep-alive
    connection, with a cap of one: none may be refused."""
    token = api_user_create(username="sequential", read_only=True)
    parts = urlsplit(capped_stack.url)
    client = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
    statuses = collections.Counter()
    try:
        for _ in range(300):
            client.request(
                "GET",
                "/api/users/?page_size=5&count=none",
                headers={"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"},
            )
            response = client.getresponse()
            response.read()
            statuses[response.status] += 1
    finally:
        client.close()
    assert statuses == {200: 300}


@pytest.mark.django_db(transaction=True)
@needs_programs("nginx")
def test_a_request_that_fails_with_a_500_gives_its_slot_back(capped_stack):
    """DRF skips finalize_response, where the slot was given back, for an
    exception it does not handle: after one 500 the user's slot stayed held
    until the garbage collector ran (429s for minutes). A table that is
    missing for a moment makes a list and an export fail with a 500."""
    token = api_user_create(username="unlucky", read_only=True)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE core_customer_list RENAME TO core_customer_list_away")
    try:
        failed = [
            call(capped_stack.url, path, token=token)
            for path in ("/api/users/?page_size=5", "/api/users/export/")
        ]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE core_customer_list_away RENAME TO core_customer_list")
    assert [(answer.status, answer.is_json) for answer in failed] == [(500, True)] * 2
    after = [call(capped_stack.url, "/api/users/?page_size=5", token=token) for _ in range(3)]
    assert [answer.status for answer in after] == [200] * 3
