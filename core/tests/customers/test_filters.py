"""Substring filters: literal wildcards, Unicode case."""

from __future__ import annotations

import json

import pytest
from django.db import connection

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
    from core.folding import fold

    client = api_client()
    for value in ("sm", "S", "ü"):
        body = client.get(f"{URL}?last_name={value}&count=exact&page_size=500").json()
        expected = sorted(row["id"] for row in dataset if fold(value) in fold(row["last_name"]))
        assert sorted(row["id"] for row in body["results"]) == expected
        assert body["count"] == len(expected)


def containing(field: str, text: str) -> list[str]:
    from core.customers.known import Containing, look_up

    return look_up([Containing(field, text)])[0].get(field, [])


def test_city_and_country_match_among_the_known_values(dataset):
    assert containing("city", "ienn") == ["Vienna"]
    assert containing("city", "%") == []
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


def test_names_are_looked_up_among_the_known_names(dataset):
    assert sorted(containing("last_name", "mith")) == ["Smith", "Smithson"]
    body = api_client().get(f"{URL}?last_name=MITH&count=exact&page_size=500").json()
    expected = [r["id"] for r in dataset if "MITH" in r["last_name"].upper()]
    assert sorted(row["id"] for row in body["results"]) == sorted(expected)
    assert body["count"] == len(expected)


def test_a_name_is_found_however_the_customer_was_written(dataset):
    """The filter reads names from SearchTerm: the read table's trigger
    function keeps it whole for the ORM, bulk inserts, updates and plain SQL
    alike."""
    from core.models import Address, AppUser, SearchTerm

    address = Address.objects.first()
    common = {"gender": "o", "phone_number": "+1", "address": address}
    AppUser.objects.create(first_name="Qorm", last_name="Xvone", customer_id="W-1", **common)
    AppUser.objects.bulk_create(
        [AppUser(first_name="Qbulk", last_name="Xvtwo", customer_id="W-2", **common)]
    )
    renamed = AppUser.objects.exclude(customer_id__startswith="W-").first()
    AppUser.objects.filter(pk=renamed.pk).update(last_name="Xvthree")
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO core_appuser (first_name, last_name, gender, customer_id, "
            "phone_number, address_id, created, last_updated) "
            "VALUES ('Qsql', 'Xvfour', 'o', 'W-3', '+1', %s, now(), now())",
            [address.pk],
        )
    assert SearchTerm.objects.filter(value__startswith="Xv").count() == 4
    body = api_client().get(f"{URL}?last_name=xv&count=exact&page_size=500").json()
    assert sorted(row["last_name"] for row in body["results"]) == [
        "Xvfour",
        "Xvone",
        "Xvthree",
        "Xvtwo",
    ]
    assert body["count"] == 4
    body = api_client().get(f"{URL}?first_name=q&ordering=-birthday&page_size=500").json()
    assert {"Qorm", "Qbulk", "Qsql"} <= {row["first_name"] for row in body["results"]}


def test_a_text_in_too_many_names_is_tested_on_each_row(dataset, monkeypatch):
    from core.customers import tunables

    client = api_client()
    orderings = ("id", "-relationship__points", "address__city", "-birthday")

    def listed() -> dict[str, list[int]]:
        return {
            ordering: [
                row["id"]
                for row in client.get(
                    f"{URL}?last_name=s&ordering={ordering}&count=exact&page_size=500"
                ).json()["results"]
            ]
            for ordering in orderings
        }

    looked_up = listed()
    assert len(containing("last_name", "s")) > 2
    monkeypatch.setattr(tunables, "MAX_VALUES", 2)
    assert listed() == looked_up
    assert len(looked_up["id"]) == sum(1 for r in dataset if "S" in r["last_name"].upper())


@pytest.mark.parametrize(
    ("text", "piece"),
    [
        ("+49 30 78965766", "78965766"),  # the padded "  4", " 30" are in most numbers
        ("78965766", "78965766"),
        ("(212) 5", "(212) 5"),  # no word long enough: the whole text
        ("smith", "smith"),
    ],
)
def test_a_long_substring_is_looked_up_by_its_longest_word(text, piece):
    from core.customers.filters import indexed_piece

    assert indexed_piece(text) == piece


def test_a_substring_looked_up_by_a_word_matches_only_the_whole_text(dataset):
    """The index finds the rows with the word; the whole text, separators
    included, is what must be in the phone number."""
    from core.customers.filters import indexed_piece

    client = api_client()
    number = next(
        row["phone_number"]
        for row in dataset
        if indexed_piece(row["phone_number"]) != row["phone_number"]
    )
    head, _, tail = number.rpartition(" ")
    texts = {number, f"{head}-{tail}", f"{tail} {head}"}
    for text in texts:
        body = client.get(URL, {"phone_number": text, "count": "exact", "page_size": 500}).json()
        expected = sorted(r["id"] for r in dataset if text.upper() in r["phone_number"].upper())
        assert sorted(row["id"] for row in body["results"]) == expected, text
        assert body["count"] == len(expected)
