"""Pages, cursors and counts."""

from __future__ import annotations

import base64
import datetime as dt
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import signing
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.customers.cursors import seal
from core.customers.pagination import CustomerPagination
from core.tests.clients import api_client


@pytest.fixture
def dataset(module_dataset):
    """Every test here reads the same customers: loaded once for the module."""
    return module_dataset


pytestmark = pytest.mark.django_db


URL = "/api/users/"


def test_tampered_and_foreign_cursors_are_a_400(dataset, settings):
    client = api_client()
    next_url = client.get(f"{URL}?ordering=last_name&page_size=3").json()["next"]
    token = parse_qs(urlsplit(next_url).query)["cursor"][0]
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert client.get(f"{URL}?ordering=last_name&cursor={tampered}").status_code == 400
    # Issued for another ordering.
    response = client.get(f"{URL}?ordering=first_name&cursor={token}")
    assert response.status_code == 400
    assert "last_name" in response.json()["cursor"][0]
    # Sealed with another secret key.
    signing_key = settings.SECRET_KEY
    settings.SECRET_KEY = "another-deployment"
    assert client.get(f"{URL}?ordering=last_name&cursor={token}").status_code == 400
    # A plain signed cursor (what cursors once were) is not one.
    settings.SECRET_KEY = signing_key
    signed = signing.dumps({"o": "last_name", "k": ["x", 1], "b": 0}, salt="core.customers.cursor")
    assert client.get(f"{URL}?ordering=last_name&cursor={signed}").status_code == 400
    # Well sealed, but positions that make no sense.
    for keys in (["x"], [1, 2, 3], [None, None], [[1], {}]):
        forged = seal({"o": "last_name", "k": keys, "b": 0}, salt=CustomerPagination.cursor_salt)
        assert client.get(f"{URL}?ordering=last_name&cursor={forged}").status_code == 400


@pytest.mark.parametrize("ordering", ["birthday", "-last_name", "address__city", "id"])
def test_a_cursor_reveals_no_key_value(dataset, ordering):
    """A cursor travels in URLs and access logs: its boundary row's birthday,
    name, city or id must not be readable from it."""
    client = api_client()
    body = client.get(f"{URL}?ordering={ordering}&page_size=2").json()
    last = body["results"][-1]
    tokens = [
        parse_qs(
            urlsplit(client.get(f"{URL}?ordering={ordering}&page_size=2").json()["next"]).query
        )["cursor"][0]
        for _ in range(2)
    ]
    assert tokens[0] != tokens[1]  # a fresh nonce each time: equal positions look unrelated
    raw = base64.urlsafe_b64decode(tokens[0] + "=" * (-len(tokens[0]) % 4))
    values = [str(last["id"]), last["last_name"], last["address"]["city"] or ""]
    if last["birthday"]:
        values.append(last["birthday"])
    # (Values of four characters or more: a shorter one turns up in random bytes by chance.)
    for value in (v for v in values if len(v) >= 4):
        assert value.encode() not in raw
        assert value not in tokens[0]
    assert b"last_name" not in raw
    assert b'"k"' not in raw
    # And it still pages on.
    assert (
        client.get(f"{URL}?ordering={ordering}&page_size=2&cursor={tokens[0]}").status_code == 200
    )


def test_a_page_past_the_end_is_a_404_with_json(dataset):
    response = api_client().get(f"{URL}?page=1000&page_size=50")
    assert response.status_code == 404
    assert "past the end" in response.json()["detail"]


def test_counts_exact_estimated_and_none(dataset, settings):
    client = api_client()
    exact = client.get(f"{URL}?count=exact").json()
    assert (exact["count"], exact["count_is_estimate"]) == (len(dataset), False)
    assert client.get(f"{URL}?count=none").json()["count"] is None
    settings.CRM_EXACT_COUNT_THRESHOLD = 10_000
    small = client.get(URL).json()
    assert (small["count"], small["count_is_estimate"]) == (len(dataset), False)
    settings.CRM_EXACT_COUNT_THRESHOLD = 5
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE core_customer_list")
    estimated = client.get(URL).json()
    assert estimated["count_is_estimate"] is True
    assert isinstance(estimated["count"], int)
    assert estimated["count"] > 5


@pytest.mark.parametrize("size", [1, 50, 150])
def test_query_count_does_not_grow_with_the_page(
    dataset, size, django_assert_num_queries, settings
):
    # The rate limit shares its counts at most once a second (tested apart).
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": None}
    client = api_client()
    client.get(f"{URL}?page_size={size}")  # warm the connection, read the sample
    # The page and its count in one statement: never a query per row (the
    # token's user is cached after the first request).
    with django_assert_num_queries(1):
        response = client.get(f"{URL}?page_size={size}&ordering=-relationship__points&count=exact")
    assert response.status_code == 200
    with django_assert_num_queries(1):
        client.get(f"{URL}?page_size={size}&count=none&page=2")


def test_a_first_page_that_holds_every_match_is_its_own_count(dataset):
    client = api_client()
    body = client.get(f"{URL}?city=vienna&page_size=500").json()
    assert body["count"] == len(body["results"]) > 0
    assert body["count_is_estimate"] is False


def test_a_count_under_the_threshold_is_exact(dataset, settings):
    client = api_client()
    matching = sum(1 for row in dataset if row["gender"] == "f")
    settings.CRM_EXACT_COUNT_THRESHOLD = matching + 10
    body = client.get(f"{URL}?gender=f&ordering=created&page_size=5").json()
    assert (body["count"], body["count_is_estimate"]) == (matching, False)
    # Over the threshold (but within twice it): the estimate, at least the threshold.
    settings.CRM_EXACT_COUNT_THRESHOLD = matching * 2 // 3
    body = client.get(f"{URL}?gender=f&ordering=created&page_size=5").json()
    assert body["count_is_estimate"] is True
    assert body["count"] > matching * 2 // 3


def test_a_count_that_would_cost_more_than_its_budget_settles_for_the_estimate(
    dataset, settings, monkeypatch
):
    """Under the threshold too: an exact count must not cost more than a page."""
    from core.customers import plans

    client = api_client()
    matching = sum(1 for row in dataset if row["gender"] == "f")
    settings.CRM_EXACT_COUNT_THRESHOLD = matching + 10
    monkeypatch.setattr(plans, "EXACT_COUNT_BUDGET_US", 0)
    body = client.get(f"{URL}?gender=f&ordering=created&page_size=5").json()
    assert body["count_is_estimate"] is True
    assert matching / 2 <= body["count"] <= matching * 2
    monkeypatch.setattr(plans, "EXACT_COUNT_BUDGET_US", 10**9)
    body = client.get(f"{URL}?gender=f&ordering=created&page_size=5").json()
    assert (body["count"], body["count_is_estimate"]) == (matching, False)


def test_a_sort_counts_its_matches_as_it_reads_them(dataset, monkeypatch):
    from core.customers import plans

    monkeypatch.setattr(plans, "walk_budget", lambda *arguments: 0)
    client = api_client()
    client.get(URL)
    with CaptureQueriesContext(connection) as queries:
        body = client.get(f"{URL}?points_min=100&birthday_to=1990-01-01&ordering=-created").json()
    expected = sum(
        1
        for row in dataset
        if row["points"] is not None
        and row["points"] >= 100
        and row["birthday"] is not None
        and row["birthday"] <= dt.date(1990, 1, 1)
    )
    assert (body["count"], body["count_is_estimate"]) == (expected, False)
    (page,) = [q["sql"] for q in queries.captured_queries if "core_customer_list" in q["sql"]]
    assert "COUNT(*) OVER ()" in page
