"""POST /api/users/import/: the body is the file; the answer is the import's
summary, a 400 naming each bad row, a 411 or 413 before a byte is staged."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from core.models import AppUser, HistoryEvent
from core.security.api_users import api_user_create
from core.tests.api.test_write_races import Request, customer_locked, wait_until_waiting
from core.tests.customers.test_imports import csv_of, exported, loaded, rows_of
from core.tests.dataset.snapshots import table_digest
from core.tests.read_table import drift

pytestmark = pytest.mark.django_db

URL = "/api/users/import/"
__all__ = ["loaded"]


@pytest.fixture
def importer() -> Client:
    return Client(
        headers={"authorization": f"Token {api_user_create(username='importer', read_only=False)}"}
    )


def post(client: Client, body: bytes, query: str = "", content_type: str = "text/csv", **extra):
    return client.generic("POST", f"{URL}{query}", body, content_type=content_type, **extra)


@pytest.mark.parametrize(
    ("fmt", "content_type"), [("csv", "text/csv"), ("ndjson", "application/x-ndjson")]
)
def test_posting_the_export_back_changes_nothing(loaded, importer, fmt, content_type):
    before, events = table_digest(), HistoryEvent.objects.count()
    response = post(importer, exported(fmt), content_type=content_type)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["created"], body["updated"], body["unchanged"], body["invalid"]) == (0, 0, 60, 0)
    assert body["errors"] == []
    assert table_digest() == before
    assert HistoryEvent.objects.count() == events


def test_an_imports_events_carry_its_source_and_id(loaded, importer):
    rows = rows_of(exported())
    rows[5]["address_city"] = "Linz"
    response = post(importer, csv_of(rows))
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["created"], body["updated"]) == (0, 1)
    event = HistoryEvent.objects.filter(kind="U").latest("id")
    assert (event.source, event.request_id) == (HistoryEvent.Source.IMPORT, body["import_id"])
    assert event.actor_id == get_user_model().objects.get(username="importer").pk


def test_a_bad_row_is_a_400_naming_line_and_field_and_nothing_is_written(loaded, importer):
    rows = rows_of(exported())
    rows[3]["birthday"] = "1990-02-31"
    rows[4]["first_name"] = "Changed"
    before = table_digest()
    response = post(importer, csv_of(rows))
    assert response.status_code == 400
    body = response.json()
    assert body["invalid"] == 1
    assert [(e["line"], e["field"]) for e in body["errors"]] == [(5, "birthday")]
    assert table_digest() == before


def test_skip_invalid_writes_the_good_rows(loaded, importer):
    rows = rows_of(exported())
    rows[3]["birthday"] = "not a date"
    rows[4]["first_name"] = "Changed"
    response = post(importer, csv_of(rows), "?skip_invalid=1")
    assert response.status_code == 200, response.content
    assert (response.json()["updated"], response.json()["invalid"]) == (1, 1)
    assert AppUser.objects.filter(first_name="Changed").count() == 1


def test_a_dry_run_answers_the_changes_and_writes_nothing(loaded, importer):
    rows = rows_of(exported())
    rows[0]["last_name"] = "Dry"
    before = table_digest()
    response = post(importer, csv_of(rows), "?dry_run=1")
    assert response.status_code == 200
    body = response.json()
    assert body["written"] is False
    assert body["changes"][0]["changes"]["last_name"][1] == "Dry"
    assert table_digest() == before


def test_a_file_over_the_limit_is_a_413_before_it_is_read(loaded, importer, settings):
    settings.CRM_IMPORT_MAX_BYTES = 1000
    before = table_digest()
    response = post(importer, exported())
    assert response.status_code == 413
    assert "1,000" in response.json()["detail"]
    assert table_digest() == before


@pytest.mark.parametrize("length", ["", "12abc"])
def test_a_body_without_a_length_is_a_411(loaded, importer, length):
    response = post(importer, exported(), CONTENT_LENGTH=length)
    assert response.status_code == 411


@pytest.mark.parametrize(
    ("query", "named"),
    [("?match=phone", "match"), ("?skip_invalid=maybe", "skip_invalid"), ("?page=2", "page")],
)
def test_a_bad_parameter_is_a_400_naming_it(loaded, importer, query, named):
    response = post(importer, exported(), query)
    assert response.status_code == 400
    assert named in response.json()


def test_a_wrong_header_is_a_400_naming_it(loaded, importer):
    data = exported().replace(b",first_name,", b",firstname,", 1)
    response = post(importer, data)
    assert response.status_code == 400
    assert response.json()["errors"][0]["line"] == 1
    assert "firstname" in str(response.json()["errors"])


def test_a_reader_may_not_import(loaded):
    reader = Client(
        headers={"authorization": f"Token {api_user_create(username='r', read_only=True)}"}
    )
    assert post(reader, exported()).status_code == 403


def test_the_schema_documents_the_import(importer):
    schema = importer.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/users/import/"]["post"]
    assert {"200", "400", "411", "413"} <= set(operation["responses"])
    assert {p["name"] for p in operation["parameters"]} >= {"dry_run", "skip_invalid", "match"}


@pytest.mark.django_db(transaction=True)
def test_a_racing_patch_of_a_field_the_file_does_not_change_keeps_its_change(loaded, importer):
    """The PATCH holds the customer's lock first; the import has read its file
    and the customer, waits for the lock, then writes the new street beside
    the PATCH's first name, though its file still has the old one."""
    rows = rows_of(exported())
    pk = int(rows[0]["id"])
    rows[0]["address_street"] = "Importweg"
    imported: list[int] = []

    def run_import() -> None:
        try:
            imported.append(post(importer, csv_of(rows[:1])).status_code)
        finally:
            connection.close()

    with customer_locked(pk):
        single = Request(importer, "patch", f"/api/users/{pk}/", {"first_name": "Racer"})
        single.start()
        wait_until_waiting(1)
        many = threading.Thread(target=run_import)
        many.start()
        wait_until_waiting(2)
    many.join()
    assert (single.result(), imported) == (200, [200])
    customer = AppUser.objects.select_related("address").get(pk=pk)
    assert (customer.first_name, customer.address.street) == ("Racer", "Importweg")
    assert drift() == []
