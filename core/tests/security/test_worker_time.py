"""Each user's share of one machine's worker time: requests bounded by what
they cost, not only by how many are under way."""

from __future__ import annotations

import concurrent.futures
import time

import pytest
from django.contrib.auth import get_user_model

from bench import servers
from core.dataset.loader import customer_dataset_replace
from core.security import local_slots, worker_time
from core.security.api_users import api_user_create
from core.tests.clients import api_client
from crm.tests.http_client import call
from crm.tests.processes import needs_programs, table_locked

#: A request made slow by a lock the test holds, so that what it costs is the
#: test's choice, not the machine's speed.
HELD = "/api/users/?ordering=address__city&page_size=500&page=1"


@pytest.mark.django_db(transaction=True)
@needs_programs("nginx")
def test_a_user_past_its_share_of_worker_time_waits_while_another_is_served(tmp_path):
    customer_dataset_replace(n=200, chunk=200, seed=1)
    heavy = api_user_create(username="heavy", read_only=True)
    light = api_user_create(username="light", read_only=True)
    with (
        servers.serving_stack(
            tmp_path,
            secret_key="t" * 64,
            token=light,
            workers=3,
            extra_env={
                # 100 ms a second: ten seconds ahead is one second of worker time.
                "CRM_USER_WORKER_MS": "100",
                "CRM_LOCK_TIMEOUT_MS": "0",
                "CRM_STATEMENT_TIMEOUT_MS": "30000",
            },
        ) as stack,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        with table_locked():
            held = pool.submit(call, stack.url, HELD, token=heavy, timeout=60)
            time.sleep(1.5)
        # One request that held its worker 1.5 s: fifteen seconds of a 100 ms
        # share, five past the burst. (Before, only the count of requests
        # under way was capped, and the next one was served.)
        assert held.result().status == 200
        refused = call(stack.url, "/api/users/?page_size=5", token=heavy)
        other = call(stack.url, "/api/users/?page_size=5", token=light)
    assert refused.status == 429, refused.body
    assert "share" in refused.json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 6
    assert other.status == 200


def test_a_share_is_a_rate_that_may_run_ahead(monkeypatch, tmp_path):
    monkeypatch.setattr(worker_time, "slots_dir", lambda: tmp_path)
    assert worker_time.ahead(1) == 0
    worker_time.charge(1, 0.9, share_ms=100)  # nine seconds of a 100 ms share
    assert worker_time.ahead(1) == pytest.approx(9, abs=0.2)
    worker_time.charge(1, 0.3, share_ms=100)  # twelve: past the burst
    assert worker_time.ahead(1) == pytest.approx(12, abs=0.2)
    assert worker_time.ahead(2) == 0, "per user"


@pytest.mark.django_db
def test_a_user_over_its_share_is_served_one_request_at_a_time(settings):
    """Refused and let through in turn, a user still ran two heavy requests
    at once whenever it was let through: past a second ahead of its share,
    a second request under way is a 429."""
    settings.CRM_USER_WORKER_MS = 1000
    customer_dataset_replace(n=10, chunk=10, seed=1)
    client = api_client("over-share")
    user = get_user_model().objects.get(username="over-share")
    assert client.get("/api/users/").status_code == 200
    worker_time.charge(user.pk, 3.0, share_ms=1000)  # three seconds ahead
    under_way = local_slots.take(f"user-over-share-{user.pk}", 1)  # as a request elsewhere
    try:
        refused = client.get("/api/users/")
    finally:
        under_way.release()
    assert refused.status_code == 429
    assert "one at a time" in refused.json()["detail"]
    assert client.get("/api/users/").status_code == 200
    assert api_client("within-share").get("/api/users/").status_code == 200
