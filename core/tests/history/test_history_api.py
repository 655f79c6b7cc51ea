"""A customer's history through the API: every change, who made it and how,
newest first by cursor, filtered, and only for those allowed to read it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test import Client

from core.security.api_users import api_user_create

pytestmark = pytest.mark.django_db

URL = "/api/users/"


@pytest.fixture
def clients(settings):
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": None}
    historian = api_user_create(username="historian", read_only=False, granted=("view_history",))
    plain = api_user_create(username="plain", read_only=False)
    return (
        Client(headers={"authorization": f"Token {historian}"}),
        Client(headers={"authorization": f"Token {plain}"}),
    )


def new_customer(client: Client, number: str = "H-1") -> int:
    response = client.post(
        URL,
        {
            "first_name": "Hanna",
            "last_name": "Hist",
            "gender": "f",
            "customer_id": number,
            "phone_number": "+43 1 111",
            "address": {
                "street": "Gasse",
                "street_number": "1",
                "city_code": "1010",
                "city": "Vienna",
                "country": "Austria",
            },
            "relationship": {"points": 10},
        },
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def patch(client: Client, pk: int, body: dict):
    response = client.patch(f"{URL}{pk}/", body, content_type="application/json")
    assert response.status_code == 200, response.content
    return response


def history(client: Client, pk: int, query: str = "") -> dict:
    response = client.get(f"{URL}{pk}/history/{query}")
    assert response.status_code == 200, response.content
    return response.json()


def test_a_change_through_the_api_says_who_made_it_and_only_what_changed(clients):
    historian, _ = clients
    pk = new_customer(historian)
    response = patch(historian, pk, {"address": {"city": "Graz"}, "relationship": {"points": 5}})
    events = history(historian, pk)["results"]
    newest = {tuple(sorted(e["changes"])) for e in events if e["kind"] == "changed"}
    assert ("address.city",) in newest
    assert ("relationship.points",) in newest
    city = next(e for e in events if "address.city" in e["changes"])
    assert city["changes"]["address.city"] == ["Vienna", "Graz"]
    assert (city["actor"], city["source"]) == ("historian", "api")
    assert city["request_id"] == response["X-Request-ID"]
    assert {"at", "actor", "source", "request_id", "kind", "changes"} == set(city)


def test_a_change_in_sql_is_recorded_without_a_writer(clients):
    historian, _ = clients
    pk = new_customer(historian)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE core_appuser SET last_name = 'Sequel' WHERE id = %s", [pk])
    (event,) = [e for e in history(historian, pk)["results"] if e["kind"] == "changed"]
    assert (event["actor"], event["source"], event["request_id"]) == (None, "database", None)


def test_pages_go_back_in_time_by_cursor(clients):
    historian, _ = clients
    pk = new_customer(historian)
    for points in range(1, 6):
        patch(historian, pk, {"relationship": {"points": points}})
    seen, query = [], "?page_size=2&field=relationship.points"
    while query is not None:
        page = history(historian, pk, query)
        seen += [e["changes"]["relationship.points"] for e in page["results"]]
        query = page["next"] and "?" + page["next"].split("?", 1)[1]
    assert seen == [[4, 5], [3, 4], [2, 3], [1, 2], [10, 1], [None, 10]]


def test_filters_by_time_actor_and_field(clients):
    historian, _ = clients
    pk = new_customer(historian)
    patch(historian, pk, {"first_name": "Hanne"})
    with connection.cursor() as cursor:
        cursor.execute("UPDATE core_appuser SET first_name = 'Hannah' WHERE id = %s", [pk])
    by_actor = history(historian, pk, "?actor=historian&field=first_name")["results"]
    assert [e["changes"]["first_name"] for e in by_actor] == [["Hanna", "Hanne"], [None, "Hanna"]]
    future = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    assert history(historian, pk, f"?since={future}")["results"] == []
    assert len(history(historian, pk, f"?until={future}&field=first_name")["results"]) == 3


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("?field=password", "field"),
        ("?since=yesterday", "since"),
        ("?actor=nobody-at-all", "actor"),
        ("?colour=red", "colour"),
        ("?cursor=not-a-cursor", "cursor"),
        ("?since=2025-01-02&until=2025-01-01", "since"),
        ("?page_size=501", "page_size"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(clients, query, parameter):
    historian, _ = clients
    pk = new_customer(historian)
    response = historian.get(f"{URL}{pk}/history/{query}")
    assert response.status_code == 400
    assert parameter in response.json()


def test_history_needs_its_own_permission(clients):
    historian, plain = clients
    pk = new_customer(historian)
    assert plain.get(f"{URL}{pk}/").status_code == 200
    assert plain.get(f"{URL}{pk}/history/").status_code == 403
    assert plain.get(f"{URL}{pk}/personal-data/").status_code == 403
    assert Client().get(f"{URL}{pk}/history/").status_code == 401


def test_no_customer_and_no_history_is_a_404(clients):
    historian, _ = clients
    assert historian.get(f"{URL}999999/history/").status_code == 404


def test_a_deleted_customers_history_stays_readable(clients):
    historian, _ = clients
    pk = new_customer(historian)
    assert historian.delete(f"{URL}{pk}/").status_code == 204
    kinds = [e["kind"] for e in history(historian, pk)["results"]]
    assert kinds[0] == "deleted"


def test_personal_data_holds_the_customer_and_their_whole_history(clients):
    historian, _ = clients
    pk = new_customer(historian)
    patch(historian, pk, {"last_name": "Hist-Two"})
    data = historian.get(f"{URL}{pk}/personal-data/").json()
    assert data["customer"]["last_name"] == "Hist-Two"
    assert data["customer"] == historian.get(f"{URL}{pk}/").json()
    changed = [e for e in data["history"] if "last_name" in e["changes"]]
    assert [e["changes"]["last_name"] for e in changed] == [["Hist", "Hist-Two"], [None, "Hist"]]
