"""Rate limits: per user, per address before the 401, shared by every process, hard to dodge."""

from __future__ import annotations

import concurrent.futures
import time
import urllib.error
import urllib.request

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from bench import servers
from core.dataset.loader import customer_dataset_replace
from core.security import throttling
from core.security.api_users import api_user_create
from core.tests.clients import api_client

URL = "/api/users/"


@pytest.fixture
def customers(db):
    customer_dataset_replace(n=120, chunk=60, seed=3)


#: Seconds a test's requests take at most: it starts at least this long
#: before its window (a minute, starting on the minute) ends.
TEST_SECONDS = 10


@pytest.fixture(autouse=True)
def one_window():
    """Counts start afresh on the minute: a test counting to a per-minute limit
    that crossed one would see its count reset halfway (a 401 where it
    expects the 429). Start each test well inside a minute instead."""
    left = 60 - time.time() % 60
    if left < TEST_SECONDS:
        time.sleep(left + 0.05)


def window_rows() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM core_throttle_window")
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_requests_beyond_the_rate_are_429_and_counted_per_user(customers, settings):
    settings.CRM_THROTTLE_RATES = {"anon": "2/minute", "user": "3/minute"}
    first, second = api_client("first"), api_client("second")
    assert [first.get(URL).status_code for _ in range(4)] == [200, 200, 200, 429]
    limited = first.get(URL)
    assert limited.status_code == 429
    assert 0 < int(limited["Retry-After"]) <= 60
    assert second.get(URL).status_code == 200, "another user has its own budget"


@pytest.mark.django_db
def test_anonymous_clients_are_throttled_per_ip_before_the_401(settings):
    settings.CRM_THROTTLE_RATES = {"anon": "2/minute", "user": None}
    client = Client(REMOTE_ADDR="203.0.113.9")
    assert [client.get(URL).status_code for _ in range(3)] == [401, 401, 429]
    assert Client(REMOTE_ADDR="203.0.113.10").get(URL).status_code == 401


@pytest.mark.django_db
def test_throttle_counts_are_shared_by_every_process(customers, settings):
    """The shared count lives in PostgreSQL: requests counted elsewhere count here."""
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": "2/minute"}
    client = api_client("shared")
    user_id = get_user_model().objects.get(username="shared").pk
    window = int(time.time() // 60 * 60)
    with connection.cursor() as cursor:  # as another worker would have done
        cursor.execute(
            "INSERT INTO core_throttle_window VALUES (%s, to_timestamp(%s), 2)",
            [throttling.client_key("user", str(user_id)), window],
        )
    assert client.get(URL).status_code == 429


@pytest.mark.django_db
def test_a_rotating_x_forwarded_for_is_not_a_new_client(settings):
    """Without proxies in front (the default), the header is the client's own say."""
    settings.CRM_THROTTLE_RATES = {"anon": "60/minute", "user": None}
    client = Client(REMOTE_ADDR="198.51.100.7")
    statuses = [
        client.get(URL, HTTP_X_FORWARDED_FOR=f"10.0.{i // 250}.{i % 250}").status_code
        for i in range(100)
    ]
    assert statuses[:60] == [401] * 60
    assert set(statuses[60:]) == {429}
    assert window_rows() <= 1, "one key for the client, not one per header value"


@pytest.mark.django_db
def test_an_overlong_forwarded_address_is_counted_like_any_other(settings):
    """Behind one proxy the address comes from the header: any length maps to one key."""
    settings.CRM_THROTTLE_RATES = {"anon": "5/minute", "user": None}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    client = Client(REMOTE_ADDR="127.0.0.1")
    forged = "1." * 400 + "1"
    statuses = [client.get(URL, HTTP_X_FORWARDED_FOR=forged).status_code for _ in range(7)]
    assert statuses == [401] * 5 + [429] * 2


@pytest.mark.django_db
def test_failed_tokens_count_and_a_guess_past_the_budget_costs_one_lookup(
    settings, django_assert_max_num_queries
):
    settings.CRM_THROTTLE_RATES = {"anon": "10/minute", "user": None}
    client = Client(REMOTE_ADDR="192.0.2.44", headers={"authorization": "Token " + "0" * 40})
    statuses = [client.get(URL).status_code for _ in range(12)]
    assert statuses == [401] * 10 + [429] * 2
    # The token's digest looked up, and the failure counted: nothing else.
    with django_assert_max_num_queries(2):
        assert client.get(URL).status_code == 429


@pytest.mark.django_db
def test_a_valid_token_is_served_from_an_address_that_spent_its_failure_budget(customers, settings):
    """Cached in this process or not: valid credentials are always looked up."""
    settings.CRM_THROTTLE_RATES = {"anon": "3/minute", "user": None}
    guesser = Client(REMOTE_ADDR="192.0.2.45", headers={"authorization": "Token " + "1" * 40})
    assert [guesser.get(URL).status_code for _ in range(4)] == [401, 401, 401, 429]
    token = api_user_create(username="behind-the-nat", read_only=True)
    good = Client(REMOTE_ADDR="192.0.2.45", headers={"authorization": f"Token {token}"})
    assert [good.get(URL).status_code for _ in range(3)] == [200] * 3
    assert guesser.get(URL).status_code == 429


@pytest.mark.django_db
def test_windows_that_ended_are_purged(settings, monkeypatch):
    settings.CRM_THROTTLE_RATES = {"anon": "1000/minute", "user": None}
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO core_throttle_window VALUES ('anon:stale', now() - interval '2 days', 9)"
        )
    store = throttling.PostgresCounts()
    monkeypatch.setattr(throttling.counter(), "store", store)
    store.purged = time.monotonic() - store.purge_every - 1
    Client(REMOTE_ADDR="192.0.2.50").get(URL)
    with connection.cursor() as cursor:
        cursor.execute("SELECT key FROM core_throttle_window")
        assert "anon:stale" not in {row[0] for row in cursor.fetchall()}


@pytest.mark.django_db(transaction=True)
def test_workers_share_a_limit_within_the_stated_tolerance(tmp_path):
    """Three gunicorn workers behind nginx, one user at 100 a day: at most 5% more per worker."""
    customer_dataset_replace(n=60, chunk=60)
    token = api_user_create(username="hammer", read_only=True)
    with servers.serving_stack(
        tmp_path,
        secret_key="s" * 64,
        token=token,
        workers=3,
        extra_env={"CRM_THROTTLE_USER": "100/day", "CRM_THROTTLE_ANON": "none"},
    ) as stack:

        def status(_: int) -> int:
            request = urllib.request.Request(
                f"{stack.url}{URL}?page_size=1&count=none",
                headers={"Authorization": f"Token {token}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(status, range(300)))
    served = statuses.count(200)
    assert set(statuses) == {200, 429}
    # wait_ready's request counted too.
    assert 100 <= served + 1 <= 100 + 3 * 5, served
