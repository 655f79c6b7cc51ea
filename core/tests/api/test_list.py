"""GET /api/users/ against a plain-Python model of the same rows."""

from __future__ import annotations

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from core.tests.clients import api_client
from core.tests.list_model import (
    HYPOTHESIS,
    URL,
    filter_values,
    model_list,
    numbered_page,
    orderings,
    query,
    walk,
)


@pytest.fixture
def dataset(module_dataset):
    """Every test here reads the same customers: loaded once for the module."""
    return module_dataset


pytestmark = pytest.mark.django_db


@HYPOTHESIS
@given(data=st.data(), ordering=orderings(), size=st.integers(2, 30))
def test_cursor_walk_returns_exactly_the_model_rows_in_order(dataset, data, ordering, size):
    filters = data.draw(filter_values(dataset))
    expected = model_list(dataset, filters, ordering)
    client = api_client()
    forwards = walk(client, query({**filters, "ordering": ",".join(ordering), "page_size": size}))
    assert forwards == expected


@HYPOTHESIS
@given(data=st.data(), ordering=orderings(), size=st.integers(2, 30))
def test_walking_back_from_the_end_visits_the_same_rows(dataset, data, ordering, size):
    filters = data.draw(filter_values(dataset))
    expected = model_list(dataset, filters, ordering)
    client = api_client()
    url = query({**filters, "ordering": ",".join(ordering), "page_size": size})
    while next_url := client.get(url).json()["next"]:
        url = next_url
    assert walk_pages_backwards(client, url) == expected


def walk_pages_backwards(client: Client, url: str) -> list[int]:
    """Ids of every page from ``url`` back to the first, in list order."""
    pages = []
    while url:
        body = client.get(url).json()
        pages.insert(0, [row["id"] for row in body["results"]])
        url = body["previous"]
    return [i for page in pages for i in page]


@HYPOTHESIS
@given(data=st.data(), ordering=orderings(), size=st.integers(1, 40), page=st.integers(1, 12))
def test_page_numbers_slice_the_model_list(dataset, data, ordering, size, page):
    filters = data.draw(filter_values(dataset))
    expected = model_list(dataset, filters, ordering)
    params = {
        **filters,
        "ordering": ",".join(ordering),
        "page_size": size,
        "page": page,
        "count": "exact",
    }
    body = numbered_page(api_client(), params, expected)
    if body is None:
        return
    assert body["count"] == len(expected)
    assert body["count_is_estimate"] is False
    assert (body["next"] is not None) == (page * size < len(expected))


def test_readme_examples_do_what_they_say(dataset):
    client = api_client()
    smith = client.get(f"{URL}?last_name=smith&count=exact").json()
    assert smith["results"]
    assert all("smith" in row["last_name"].lower() for row in smith["results"])
    assert {"Smith", "Smithson"} <= {row["last_name"] for row in smith["results"]}
    vienna = client.get(f"{URL}?city=vienna&page=1&page_size=2").json()
    assert all(row["address"]["city"] == "Vienna" for row in vienna["results"])
    by_points = client.get(f"{URL}?ordering=-relationship__points&page_size=50").json()
    points = [row["relationship"]["points"] for row in by_points["results"]]
    assert points == sorted(points, reverse=True)


def test_a_customer_without_a_record_is_listed_but_not_sorted_by_points(dataset):
    client = api_client()
    solo = client.get(f"{URL}?customer_id=SOLO").json()["results"]
    assert solo[0]["relationship"] is None
    assert not client.get(f"{URL}?customer_id=SOLO&ordering=relationship__points").json()["results"]


@pytest.mark.parametrize(
    "ordering",
    [
        "address__city,-id",
        "last_name,-first_name",
        "relationship__points,-birthday",
        "address__country,-address__city",
        "-first_name,created",
    ],
)
def test_orderings_no_index_serves_are_a_400_that_says_what_is_allowed(dataset, ordering):
    response = api_client().get(query({"ordering": ordering}))
    assert response.status_code == 400
    (message,) = response.json()["ordering"]
    assert "cannot be served fast" in message
    assert "Allowed orderings of several fields" in message
    assert "last_name,first_name" in message


@pytest.mark.parametrize(
    "ordering",
    [
        "created,-last_name",
        "-last_name,-first_name,created",
        "address__country,address__city",
        # One table: an index of the read table holds each of these whole.
        "address__country,address__city,id",
        "address__city,id",
        "-relationship__points,-id",
    ],
)
def test_orderings_an_index_serves_are_served(dataset, ordering):
    response = api_client().get(query({"ordering": ordering}))
    assert response.status_code == 200
    expected = model_list(dataset, {}, ordering.split(","))
    assert [row["id"] for row in response.json()["results"]] == expected[:50]
