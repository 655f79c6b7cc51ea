"""POST /api/users/bulk-update/: every customer a list query finds, changed in
one transaction, with a confirmation above the threshold, history written as
the API's, and the row locks of single writes (a racing PATCH keeps its change)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from core.customers.columns import ROW
from core.models import AppUser, CustomerRelationship, HistoryEvent
from core.security.api_users import api_user_create
from core.tests.api.test_write_races import Request, customer_locked, wait_until_waiting
from core.tests.dataset.snapshots import table_digest
from core.tests.history_replay import listed as listed_row
from core.tests.history_replay import newest_event, replay_drift
from core.tests.read_table import drift

URL = "/api/users/bulk-update/"
LIST = "/api/users/"


def client_of(username: str, *granted: str, read_only: bool = False) -> Client:
    token = api_user_create(username=username, read_only=read_only, granted=granted)
    return Client(headers={"authorization": f"Token {token}"})


@pytest.fixture
def loaded(settings):
    from core.dataset.loader import customer_dataset_replace

    settings.CRM_THROTTLE_RATES = {"anon": None, "user": None}
    settings.CRM_BULK_CONFIRM_OVER = 10
    customer_dataset_replace(n=60, chunk=60, seed=4)


@pytest.fixture
def changer() -> Client:
    return client_of("changer", "bulk_change_appuser")


def post(client: Client, query: str, body) -> dict:
    return client.post(f"{URL}{query}", body, content_type="application/json")


def listed(client: Client, query: str) -> list[dict]:
    response = client.get(f"{LIST}?page_size=100&{query.lstrip('?')}")
    assert response.status_code == 200, response.content
    return response.json()["results"]


def a_small_city(client: Client) -> str:
    """A city a few customers (at most the confirmation threshold) live in."""
    cities = [row["address"]["city"] for row in listed(client, "")]
    return min(cities, key=lambda city: (cities.count(city), city))


@pytest.mark.django_db
def test_a_patch_body_changes_every_match_and_only_them(loaded, changer):
    city = a_small_city(changer)
    starts = {pk: listed_row(pk) for pk in AppUser.objects.values_list("pk", flat=True)}
    since = newest_event()
    matches = {row["id"] for row in listed(changer, f"city={city}")}
    others = {row["id"]: row for row in listed(changer, "") if row["id"] not in matches}
    response = post(changer, f"?city={city}", {"address": {"street": "Neue Gasse"}})
    assert response.status_code == 200, response.content
    assert response.json() == {"matched": len(matches), "updated": len(matches)}
    now = {row["id"]: row for row in listed(changer, "")}
    assert {pk for pk, row in now.items() if row["address"]["street"] == "Neue Gasse"} == matches
    assert all(now[pk] == row for pk, row in others.items())
    assert drift() == []
    assert replay_drift(starts=starts, after=since) == []


@pytest.mark.django_db
def test_an_increment_adds_to_each_customers_own_points(loaded, changer):
    starts = {pk: listed_row(pk) for pk in AppUser.objects.values_list("pk", flat=True)}
    after = newest_event()
    before = {row["id"]: row["relationship"]["points"] for row in listed(changer, "points_min=1")}
    query = f"?points_min=1&confirm={len(before)}"
    response = post(changer, query, {"add": {"relationship": {"points": 100}}})
    assert response.status_code == 200, response.content
    assert response.json()["matched"] == len(before)
    points = dict(CustomerRelationship.objects.values_list("appuser_id", "points"))
    assert {pk: points[pk] for pk in before} == {pk: p + 100 for pk, p in before.items()}
    assert drift() == []
    assert replay_drift(starts=starts, after=after) == []


@pytest.mark.django_db
def test_unchanged_customers_are_matched_but_not_updated(loaded, changer):
    city = a_small_city(changer)
    assert post(changer, f"?city={city}", {"first_name": "Same"}).status_code == 200
    events = HistoryEvent.objects.count()
    response = post(changer, f"?city={city}", {"first_name": "Same"})
    assert response.json()["updated"] == 0
    assert HistoryEvent.objects.count() == events


@pytest.mark.django_db
def test_above_the_threshold_a_change_needs_the_count_and_a_stale_one_is_a_409(loaded, changer):
    everyone = AppUser.objects.count()
    before = table_digest()
    unconfirmed = post(changer, "", {"address": {"country": "Austria"}})
    assert unconfirmed.status_code == 400
    assert f"confirm={everyone}" in str(unconfirmed.json()["confirm"])
    stale = post(changer, f"?confirm={everyone - 1}", {"address": {"country": "Austria"}})
    assert stale.status_code == 409
    assert f"{everyone:,} customers match" in stale.json()["detail"]
    assert table_digest() == before
    confirmed = post(changer, f"?confirm={everyone}", {"address": {"country": "Austria"}})
    assert confirmed.status_code == 200, confirmed.content
    assert confirmed.json()["matched"] == everyone
    assert set(AppUser.objects.values_list("address__country", flat=True)) == {"Austria"}


@pytest.mark.django_db
def test_a_dry_run_shows_the_first_changes_and_writes_nothing(loaded, changer):
    before = table_digest()
    response = post(changer, "?dry_run=1", {"last_name": "Dry"})
    assert response.status_code == 200
    body = response.json()
    assert body["written"] is False
    assert body["matched"] == AppUser.objects.count()
    assert body["changes"][0]["changes"]["last_name"][1] == "Dry"
    assert table_digest() == before


@pytest.mark.django_db
def test_history_says_the_api_wrote_it_with_the_requests_id(loaded, changer):
    city = a_small_city(changer)
    response = post(changer, f"?city={city}", {"phone_number": "+43 1 999"})
    assert response.status_code == 200
    events = HistoryEvent.objects.filter(kind="U", changes__has_key="phone_number")
    assert events.count() == response.json()["updated"]
    actor = get_user_model().objects.get(username="changer").pk
    assert {(e.source, e.request_id, e.actor_id) for e in events} == {
        (HistoryEvent.Source.API, response["X-Request-ID"], actor)
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"customer_id": "X"}, "customer_id"),
        ({"email": "a@example.com"}, "email"),
        ({"birthday": "1990-02-31"}, "birthday"),
        ({"address": {"city_code": "x" * 500}}, "address"),
        ({"add": {"relationship": {"points": "many"}}}, "add"),
        ({"add": {"address": {"street": 1}}}, "add"),
        ({"add": {"relationship": {"points": 1}}, "relationship": {"points": 2}}, "add"),
        ({}, "non_field_errors"),
        ([1, 2], "non_field_errors"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field(loaded, changer, body, named):
    before = table_digest()
    response = post(changer, "?confirm=60", body)
    assert response.status_code == 400, response.content
    assert named in response.json()
    assert table_digest() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "named"),
    [("?colour=red", "colour"), ("?confirm=-1", "confirm"), ("?points_min=x", "points_min")],
)
def test_a_bad_parameter_is_a_400_naming_it(loaded, changer, query, named):
    response = post(changer, query, {"first_name": "X"})
    assert response.status_code == 400
    assert named in response.json()


@pytest.mark.django_db
def test_only_a_user_with_the_permission_may_change_many(loaded):
    writer = client_of("writer")
    assert post(writer, "?id=1", {"first_name": "X"}).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_a_racing_patch_of_another_field_keeps_its_change(loaded, changer):
    """The PATCH holds the customer's lock first: the change of many waits,
    then reads the customer after it, and writes the street beside the new phone."""
    (row,) = listed(changer, "")[:1]
    pk = row["id"]
    with customer_locked(pk):
        single = Request(changer, "patch", f"{LIST}{pk}/", {"phone_number": "+43 1 2345"})
        single.start()
        wait_until_waiting(1)
        many = Request(changer, "post", f"{URL}?id={pk}", {"address": {"street": "Bulkweg"}})
        many.start()
        wait_until_waiting(2)
    assert (single.result(), many.result()) == (200, 200)
    after = changer.get(f"{LIST}{pk}/").json()
    assert (after["phone_number"], after["address"]["street"]) == ("+43 1 2345", "Bulkweg")
    assert drift() == []


@pytest.mark.django_db(transaction=True)
def test_a_patch_with_the_etag_from_before_a_change_of_many_is_refused(loaded, changer):
    (row,) = listed(changer, "")[:1]
    pk = row["id"]
    etag = changer.get(f"{LIST}{pk}/")["ETag"]
    assert post(changer, f"?id={pk}", {"last_name": "Bulk"}).status_code == 200
    late = changer.patch(
        f"{LIST}{pk}/", {"first_name": "Late"}, content_type="application/json", HTTP_IF_MATCH=etag
    )
    assert late.status_code == 412
    assert changer.get(f"{LIST}{pk}/").json()["last_name"] == "Bulk"


def test_the_row_names_what_a_change_of_many_may_set():
    """Every writable field of the row can be set for many, except each customer's own."""
    from core.api.bulk_views import bulk_change
    from core.customers.bulk import UNIQUE_FIELDS

    assert {"customer_id", "email"} == set(UNIQUE_FIELDS)
    assert {c.name for c in ROW} >= set(UNIQUE_FIELDS)
    assert bulk_change({"address": {"city": "Graz"}}) == ({"address.city": "Graz"}, {})
