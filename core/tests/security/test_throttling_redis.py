"""The rate limits' Redis path (REDIS_URL) against Debian's redis-server: the
workers share their counts there, and a Redis that goes away fails no request."""

from __future__ import annotations

import concurrent.futures

import pytest
from django.db import connection

from bench import servers
from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create
from crm.tests.http_client import call
from crm.tests.processes import needs_programs

pytestmark = [pytest.mark.django_db(transaction=True), needs_programs("nginx", "redis-server")]

URL = "/api/users/?page_size=1&count=none"


@pytest.fixture
def redis_stack(tmp_path):
    customer_dataset_replace(n=60, chunk=60)
    token = api_user_create(username="through-redis", read_only=True)
    port = servers.free_port()
    redis = servers.start_redis(tmp_path / "redis", port)
    try:
        with servers.serving_stack(
            tmp_path,
            secret_key="d" * 64,
            token=token,
            workers=3,
            extra_env={
                "REDIS_URL": f"redis://127.0.0.1:{port}/0",
                "CRM_THROTTLE_USER": "100/day",
                "CRM_THROTTLE_ANON": "none",
            },
        ) as stack:
            yield stack, token, redis
    finally:
        servers.stop(redis)


def throttle_rows() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM core_throttle_window")
        return cursor.fetchone()[0]


def test_workers_share_a_limit_through_redis_within_the_stated_tolerance(redis_stack):
    stack, token, _ = redis_stack
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: call(stack.url, URL, token=token).status, range(300)))
    assert set(statuses) == {200, 429}
    # wait_ready's request counted too; at most 5% more per worker.
    assert 100 <= statuses.count(200) + 1 <= 100 + 3 * 5, statuses.count(200)
    assert throttle_rows() == 0, "counted in Redis, not in PostgreSQL"


def test_a_redis_that_goes_away_fails_no_request(redis_stack):
    stack, token, redis = redis_stack
    assert call(stack.url, URL, token=token).status == 200
    servers.stop(redis)
    # Token cache misses (looked up in PostgreSQL), counts kept per process.
    assert [call(stack.url, URL, token=token).status for _ in range(10)] == [200] * 10
    assert call(stack.url, URL, token="9" * 40).status == 401
