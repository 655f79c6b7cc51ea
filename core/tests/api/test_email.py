"""A customer's e-mail address, end to end: optional, validated, unique in any
case, shown, filtered, sorted, searched, exported and edited like every other
column the read table declares."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.test import Client

from core.tests.clients import api_client

pytestmark = pytest.mark.django_db

URL = "/api/users/"


def customer(number: str, email: str | None = None, **extra) -> dict:
    return {
        "first_name": "Anna",
        "last_name": "Huber",
        "gender": "f",
        "customer_id": number,
        "phone_number": "+43 1 234 5678",
        "address": {
            "street": "Neubaugasse",
            "street_number": "7",
            "city_code": "1070",
            "city": "Vienna",
            "country": "Austria",
        },
        **({"email": email} if email is not None else {}),
        **extra,
    }


@pytest.fixture
def writer(settings):
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": None}
    return api_client("writer", read_only=False)


def create(writer, number: str, email: str | None = None):
    return writer.post(URL, customer(number, email), content_type="application/json")


def test_an_address_is_kept_in_lower_case_and_shown_everywhere(writer):
    response = create(writer, "EM-1", "Anna.Huber@Example.COM")
    assert response.status_code == 201, response.content
    assert response.json()["email"] == "anna.huber@example.com"
    pk = response.json()["id"]
    assert writer.get(f"{URL}{pk}/").json()["email"] == "anna.huber@example.com"
    listed = writer.get(f"{URL}?customer_id=EM-1").json()["results"]
    assert [row["email"] for row in listed] == ["anna.huber@example.com"]


def test_a_customer_may_have_no_address(writer):
    response = create(writer, "EM-2")
    assert response.status_code == 201, response.content
    assert response.json()["email"] is None


@pytest.mark.parametrize("taken", ["anna@example.com", "ANNA@EXAMPLE.COM"])
def test_an_address_belongs_to_one_customer_in_any_case(writer, taken):
    assert create(writer, "EM-3", "anna@example.com").status_code == 201
    response = create(writer, "EM-4", taken)
    assert response.status_code == 400
    assert "email" in response.json()


def test_an_address_that_is_no_address_is_refused(writer):
    response = create(writer, "EM-5", "anna at example")
    assert response.status_code == 400
    assert list(response.json()) == ["email"]


def test_raw_sql_cannot_store_an_address_in_upper_case():
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO core_address (street, street_number, city_code, city, country) "
            "VALUES ('a', '1', '1', 'Vienna', 'Austria') RETURNING id"
        )
        (address_id,) = cursor.fetchone()
        with pytest.raises(IntegrityError), transaction.atomic():
            cursor.execute(
                "INSERT INTO core_appuser (first_name, last_name, gender, customer_id, email, "
                "phone_number, address_id, created, last_updated) VALUES "
                "('A', 'B', 'o', 'EM-SQL', 'Upper@Example.com', '+1', %s, now(), now())",
                [address_id],
            )


def test_the_list_filters_searches_and_sorts_by_address(writer):
    for number, email in (
        ("EM-6", "zoe@example.com"),
        ("EM-7", "adam@example.com"),
        ("EM-8", None),
    ):
        assert create(writer, number, email).status_code == 201
    by_filter = writer.get(f"{URL}?email=ZOE@example.com").json()["results"]
    assert [row["customer_id"] for row in by_filter] == ["EM-6"]
    by_search = writer.get(f"{URL}?search=Adam@Example.com").json()["results"]
    assert [row["customer_id"] for row in by_search] == ["EM-7"]
    ordered = writer.get(f"{URL}?ordering=email&customer_id=EM-6").json()["results"]
    assert ordered[0]["email"] == "zoe@example.com"
    ascending = [
        row["email"] for row in writer.get(f"{URL}?ordering=email&page_size=500").json()["results"]
    ]
    # Customers without an address first, then by address.
    keys = [email or "" for email in ascending]
    assert keys == sorted(keys)
    descending = writer.get(f"{URL}?ordering=-email&page_size=1").json()["results"]
    assert descending[0]["email"] == "zoe@example.com"


def test_an_address_can_be_changed_and_removed(writer):
    pk = create(writer, "EM-9", "old@example.com").json()["id"]
    changed = writer.patch(
        f"{URL}{pk}/", {"email": "New@Example.com"}, content_type="application/json"
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["email"] == "new@example.com"
    removed = writer.patch(f"{URL}{pk}/", {"email": None}, content_type="application/json")
    assert removed.json()["email"] is None
    assert writer.get(f"{URL}?email=new@example.com").json()["results"] == []


def test_the_export_carries_the_address(writer):
    assert create(writer, "EM-10", "export@example.com").status_code == 201
    response = writer.get(f"{URL}export/?customer_id=EM-10&format=csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["email"] for row in rows] == ["export@example.com"]


def test_the_admin_edits_the_address():
    boss = get_user_model().objects.create_superuser("boss", password="x")
    admin = Client()
    admin.force_login(boss)
    page = admin.get("/admin/core/appuser/add/")
    assert b'name="email"' in page.content
