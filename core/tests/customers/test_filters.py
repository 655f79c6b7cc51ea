"""Substring filters: literal wildcards, Unicode case."""

from __future__ import annotations

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
