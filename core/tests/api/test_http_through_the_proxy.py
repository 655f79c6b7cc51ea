"""HTTP as clients expect it, through the README's serving setup (nginx in front
of gunicorn, production settings): a created customer's Location, a 304 for a
version the client holds, and a CSV export that every CSV reader reads as
exactly its rows, whose completeness HTTP's chunked framing tells."""

from __future__ import annotations

import contextlib
import csv
import http.client
import io
import json
from urllib.parse import urlsplit

import psycopg
import pytest
from django.db import connection

from bench import servers
from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create
from crm.tests.http_client import call
from crm.tests.processes import needs_programs

pytestmark = [pytest.mark.django_db(transaction=True), needs_programs("nginx")]

#: Exported rows: about 5 MB of CSV, more than every buffer on the way, so that
#: an export is still streaming when the test cuts it.
ROWS = 20_000

CUSTOMER = {
    "first_name": "Anna",
    "last_name": "Huber",
    "gender": "f",
    "customer_id": "LOC-1",
    "phone_number": "+43 1 234 5678",
    "address": {
        "street": "Neubaugasse",
        "street_number": "7",
        "city_code": "1070",
        "city": "Vienna",
        "country": "Austria",
    },
}


@pytest.fixture
def stack(tmp_path):
    customer_dataset_replace(n=ROWS, chunk=10_000, seed=4)
    reader = api_user_create(username="proxy-reader", read_only=True)
    writer = api_user_create(username="proxy-writer", read_only=False)
    with servers.serving_stack(tmp_path, secret_key="h" * 64, token=reader, workers=2) as running:
        yield running, reader, writer


def test_a_created_customer_is_at_its_location_and_a_held_version_is_a_304(stack):
    running, _, writer = stack
    created = call(
        running.url,
        "/api/users/",
        method="POST",
        token=writer,
        headers={"Content-Type": "application/json"},
        body=json.dumps(CUSTOMER).encode(),
    )
    assert created.status == 201, created.body
    location = urlsplit(created.headers["Location"])
    # The client's scheme and host, as nginx passed them on.
    assert (location.scheme, location.path) == ("https", f"/api/users/{created.json()['id']}/")
    read = call(running.url, location.path, token=writer)
    assert read.json() == created.json()
    etag = read.headers["ETag"]
    held = call(running.url, location.path, token=writer, headers={"If-None-Match": etag})
    assert (held.status, held.body, held.headers["ETag"]) == (304, b"", etag)


def open_export(
    url: str, token: str
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    parts = urlsplit(url)
    client = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    client.request(
        "GET",
        "/api/users/export/?format=csv",
        headers={"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"},
    )
    response = client.getresponse()
    assert response.status == 200
    assert response.getheader("Transfer-Encoding") == "chunked"
    return client, response


def test_a_csv_export_is_exactly_its_rows_and_a_cut_one_is_an_http_error(stack):
    running, reader, _ = stack
    client, response = open_export(running.url, reader)
    with contextlib.closing(client):
        text = response.read().decode()
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0][:2] == ["id", "first_name"]
    assert len(rows) == ROWS + 1, "the header and exactly the rows: nothing a reader takes for one"
    assert [int(row[0]) for row in rows[1:]] == sorted(int(row[0]) for row in rows[1:])

    # Cut: the session streaming the COPY is ended while the client reads.
    client, response = open_export(running.url, reader)
    with contextlib.closing(client):
        first = response.read(65_536)
        assert first.startswith(b'"id"') or first.startswith(b"id,")
        params = connection.get_connection_params()
        with psycopg.connect(
            **{key: params[key] for key in ("host", "port", "user", "dbname") if params.get(key)},
            autocommit=True,
        ) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'COPY %' AND pid <> pg_backend_pid() "
                # Not another test worker's COPY, in its own database.
                "AND datname = current_database()"
            ).fetchall()
        assert ended == [(True,)]
        with pytest.raises(http.client.IncompleteRead):
            response.read()
