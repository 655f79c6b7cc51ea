"""Each user's share of one machine's worker time: requests bounded by what
they cost, not only by how many are under way."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from bench import servers
from core.dataset.loader import customer_dataset_replace
from core.security import worker_time
from core.security.api_users import api_user_create
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


def test_a_share_is_a_rate_with_a_burst_of_ten_seconds(monkeypatch, tmp_path):
    monkeypatch.setattr(worker_time, "slots_dir", lambda: tmp_path)
    assert worker_time.wait(1) is None
    worker_time.charge(1, 0.9, share_ms=100)  # nine seconds ahead: within the burst
    assert worker_time.wait(1) is None
    worker_time.charge(1, 0.3, share_ms=100)  # twelve: two past it
    assert worker_time.wait(1) == pytest.approx(2, abs=0.2)
    assert worker_time.wait(2) is None, "per user"
