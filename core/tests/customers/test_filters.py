"""Substring filters: literal wildcards, Unicode case."""

from __future__ import annotations

import json

import pytest

from core.dataset.loader import customer_dataset_replace
from core.tests.clients import api_client

pytestmark = pytest.mark.django_db


URL = "/api/users/"


def test_percent_and_underscore_match_literally(dataset):
    client = api_client()
    assert [r["last_name"] for r in client.get(f"{URL}?first_name=%25").json()["results"]] == [
        "Under_score"
    ]
    # As LIKE wildcards, "n_e" would match "Under" and "1%0" would match "100%".
    assert client.get(f"{URL}?last_name=n_e").json()["results"] == []
    assert client.get(f"{URL}?first_name=1%250").json()["results"] == []
    assert [r["first_name"] for r in client.get(f"{URL}?last_name=r_SC").json()["results"]] == [
        "100%"
    ]


def test_case_insensitive_beyond_ascii(dataset):
    body = api_client().get(f"{URL}?last_name=M%C3%9CLLER").json()  # MÜLLER
    assert [row["first_name"] for row in body["results"]] == ["Jürgen"]


@pytest.fixture
def customers(db):

    customer_dataset_replace(n=120, chunk=60, seed=3)


@pytest.mark.django_db
def test_percent_and_underscore_values_match_literally_not_as_wildcards(customers):
    client = api_client()
    assert client.get(f"{URL}?last_name=%25").json()["results"] == []
    assert client.get(f"{URL}?first_name=_").json()["results"] == []


@pytest.mark.parametrize(
    ("text", "indexed"),
    [
        ("smi", True),
        ("(212) 5", True),
        ("31 86", True),  # "31 ": a word followed by a separator is padded
        ("sm", False),
        ("a", False),
        ("2 4", False),  # only "  4", which most numbers share
    ],
)
def test_a_substring_without_a_trigram_is_not_looked_up_in_the_trigram_index(text, indexed):
    from core.customers.filters import has_trigram

    assert has_trigram(text) is indexed


def test_short_substrings_match_the_same_rows_without_the_index(dataset):
    client = api_client()
    for value in ("sm", "S", "ü"):
        body = client.get(f"{URL}?last_name={value}&count=exact&page_size=500").json()
        expected = sorted(row["id"] for row in dataset if value.upper() in row["last_name"].upper())
        assert sorted(row["id"] for row in body["results"]) == expected
        assert body["count"] == len(expected)


def test_city_and_country_match_among_the_distinct_values(dataset):
    from core.customers.filters import CustomerFilter

    city = CustomerFilter.base_filters["city"]
    assert city.values_containing("ienn") == ["Vienna"]
    assert city.values_containing("%") == []
    body = api_client().get(f"{URL}?city=IENN&country=stri&count=exact&page_size=500").json()
    expected = [r["id"] for r in dataset if r["city"] == "Vienna" and r["country"] == "Austria"]
    assert sorted(row["id"] for row in body["results"]) == sorted(expected)


def test_a_customer_without_a_birthday_is_in_no_birthday_range(dataset):
    body = api_client().get(f"{URL}?birthday_from=1900-01-01&page_size=500").json()
    assert body["results"]
    assert all(row["birthday"] is not None for row in body["results"])
    assert len(body["results"]) == sum(1 for row in dataset if row["birthday"] is not None)


def test_a_city_or_country_that_no_value_contains_matches_nothing_everywhere(dataset):
    client = api_client()
    for query in ("city=999999999999", "country=zzq&ordering=-relationship__points"):
        body = client.get(f"{URL}?{query}&count=exact").json()
        assert (body["results"], body["count"]) == ([], 0)
        # The export compiles the query itself: no value is no SQL "IN ()".
        export = client.get(f"{URL}export/?{query}&format=ndjson")
        assert export.status_code == 200
        body = b"".join(export.streaming_content).decode()
        assert json.loads(body) == {"end_of_export": {"rows": 0}}
