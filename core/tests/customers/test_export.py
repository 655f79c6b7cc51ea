"""The streaming export: the list's rows, quoted right, with constant memory."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.db import connection
from django.test import Client

from core.tests.clients import api_client

pytestmark = pytest.mark.django_db


URL = "/api/users/"


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


@pytest.mark.parametrize(
    "query", ["", "city=vienna", "ordering=-relationship__points", "search=smith"]
)
def test_csv_export_equals_the_list_and_quotes_correctly(people, query):
    client = api_client()
    response = client.get(f"{URL}export/?{query}")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="customers-' in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode()
    exported = list(csv.DictReader(io.StringIO(text)))
    assert exported == [flatten(row) for row in list_all(client, query)]
    assert all(row["address_street"] == 'Main "Street", corner\nBlock B' for row in exported)


def test_ndjson_export_equals_the_list(people):
    client = api_client()
    response = client.get(f"{URL}export/?format=ndjson&ordering=last_name")
    assert response["Content-Type"] == "application/x-ndjson"
    lines = b"".join(response.streaming_content).decode().splitlines()
    exported = [json.loads(line) for line in lines]
    listed = [flatten(row) for row in list_all(client, "ordering=last_name")]
    assert [{k: "" if v is None else str(v) for k, v in r.items()} for r in exported] == listed


def test_export_checks_permissions_and_parameters(people):
    assert Client().get(f"{URL}export/").status_code == 401
    client = api_client()
    assert client.get(f"{URL}export/?format=xml").status_code in (400, 404)
    assert client.get(f"{URL}export/?last_nme=x").status_code == 400
    assert client.get(f"{URL}export/?page=2").status_code == 400


def test_export_works_with_the_debug_cursor(people):
    """With DEBUG on (the quickstart), Django wraps cursors; COPY must still stream."""
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection):
        response = api_client().get(f"{URL}export/")
        text = b"".join(response.streaming_content).decode()
    assert len(list(csv.DictReader(io.StringIO(text)))) == len(people)
