"""Customer detail and writes: nested address and loyalty record, one transaction, clear 400s."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from core.models import Address, AppUser, CustomerRelationship
from core.tests.clients import api_client

pytestmark = pytest.mark.django_db

URL = "/api/users/"


def payload(**changes) -> dict:
    body = {
        "first_name": "Anna",
        "last_name": "Huber",
        "gender": "f",
        "customer_id": "NEW-0001",
        "phone_number": "+43 1 234 5678",
        "birthday": "1984-05-17",
        "address": {
            "street": "Neubaugasse",
            "street_number": "7",
            "city_code": "1070",
            "city": "Vienna",
            "country": "Austria",
        },
        "relationship": {"points": 120},
    }
    body.update(changes)
    return body


@pytest.fixture
def editor():
    return api_client("editor", read_only=False)


def table_counts() -> tuple[int, int, int]:
    return (AppUser.objects.count(), Address.objects.count(), CustomerRelationship.objects.count())


def test_create_read_update_delete_round_trip(editor):
    created = editor.post(URL, payload(), content_type="application/json")
    assert created.status_code == 201, created.content
    body = created.json()
    pk = body["id"]
    assert body["address"]["city"] == "Vienna"
    assert body["relationship"]["points"] == 120
    assert editor.get(f"{URL}{pk}/").json() == body

    first_updated = AppUser.objects.get(pk=pk).last_updated
    patched = editor.patch(
        f"{URL}{pk}/",
        {"address": {"street": "Ringstraße"}, "relationship": {"points": 5}},
        content_type="application/json",
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["address"]["street"] == "Ringstraße"
    assert patched.json()["address"]["city"] == "Vienna", "partial: other fields kept"
    assert patched.json()["relationship"]["points"] == 5
    assert AppUser.objects.get(pk=pk).last_updated > first_updated

    replaced = editor.put(
        f"{URL}{pk}/",
        payload(first_name="Anne", customer_id="NEW-0001"),
        content_type="application/json",
    )
    assert replaced.status_code == 200, replaced.content
    assert replaced.json()["first_name"] == "Anne"

    assert editor.delete(f"{URL}{pk}/").status_code == 204
    assert editor.get(f"{URL}{pk}/").status_code == 404
    assert table_counts() == (0, 0, 0), "the record and the customer's own address go too"


def test_the_list_finds_a_created_customer(editor):
    editor.post(URL, payload(customer_id="FIND-ME"), content_type="application/json")
    results = editor.get(f"{URL}?customer_id=FIND-ME").json()["results"]
    assert [row["customer_id"] for row in results] == ["FIND-ME"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"gender": "x"}, "gender"),
        ({"birthday": (dt.date.today() + dt.timedelta(days=1)).isoformat()}, "birthday"),
        ({"birthday": "1899-12-31"}, "birthday"),
        ({"birthday": "2023-02-30"}, "birthday"),
        ({"first_name": "x" * 65}, "first_name"),
        ({"phone_number": "1" * 33}, "phone_number"),
        ({"customer_id": ""}, "customer_id"),
        ({"relationship": {"points": -1}}, "relationship"),
        ({"relationship": {"points": 2**31}}, "relationship"),
        ({"relationship": {"last_activity": "2001-01-01T00:00:00Z"}}, "relationship"),
        ({"address": {"city": "Vienna"}}, "address"),
        ({"address": None}, "address"),
    ],
)
def test_invalid_writes_are_a_400_naming_the_field_and_change_nothing(editor, changes, field):
    before = table_counts()
    response = editor.post(URL, payload(**changes), content_type="application/json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert table_counts() == before


def test_a_taken_customer_id_is_a_400_not_a_500(editor):
    assert editor.post(URL, payload(), content_type="application/json").status_code == 201
    again = editor.post(URL, payload(), content_type="application/json")
    assert again.status_code == 400
    assert "customer_id" in again.json()
    other = editor.post(URL, payload(customer_id="OTHER"), content_type="application/json")
    taken = editor.patch(
        f"{URL}{other.json()['id']}/", {"customer_id": "NEW-0001"}, content_type="application/json"
    )
    assert taken.status_code == 400
    assert table_counts() == (2, 2, 2)


def test_last_activity_before_the_record_is_refused_on_update(editor):
    pk = editor.post(URL, payload(), content_type="application/json").json()["id"]
    record = CustomerRelationship.objects.get(pk=pk)
    earlier = (record.created - dt.timedelta(days=2)).isoformat()
    response = editor.patch(
        f"{URL}{pk}/",
        {"relationship": {"last_activity": earlier}},
        content_type="application/json",
    )
    assert response.status_code == 400
    later = (timezone.now() + dt.timedelta(hours=1)).isoformat()
    response = editor.patch(
        f"{URL}{pk}/",
        {"relationship": {"last_activity": later}},
        content_type="application/json",
    )
    assert response.status_code == 200


def test_writes_need_the_write_permissions(editor):
    reader = api_client("reader", read_only=True)
    assert reader.post(URL, payload(), content_type="application/json").status_code == 403
    pk = editor.post(URL, payload(), content_type="application/json").json()["id"]
    assert (
        reader.patch(
            f"{URL}{pk}/", {"first_name": "X"}, content_type="application/json"
        ).status_code
        == 403
    )
    assert reader.delete(f"{URL}{pk}/").status_code == 403
    assert reader.get(f"{URL}{pk}/").status_code == 200


def test_an_unknown_customer_is_a_404(editor):
    assert editor.get(f"{URL}999999/").status_code == 404
    assert editor.patch(f"{URL}999999/", {}, content_type="application/json").status_code == 404
    assert editor.delete(f"{URL}999999/").status_code == 404
