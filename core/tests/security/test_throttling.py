"""Rate limits: per user, per IP before the 401, shared by every process."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from core.dataset.loader import customer_dataset_replace
from core.tests.clients import api_client

URL = "/api/users/"


@pytest.fixture
def customers(db):

    customer_dataset_replace(n=120, chunk=60, seed=3)


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
    """The counter lives in PostgreSQL: a request counted elsewhere counts here."""
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": "2/minute"}
    client = api_client("shared")
    user_id = get_user_model().objects.get(username="shared").pk
    with connection.cursor() as cursor:  # as another worker would have done
        cursor.execute(
            "INSERT INTO core_throttle_window VALUES (%s, to_timestamp(floor(extract(epoch "
            "FROM now()) / 60) * 60), 2)",
            [f"throttle_user_{user_id}"],
        )
    assert client.get(URL).status_code == 429
