"""The API through a real PgBouncer in transaction mode: pages, cursors, writes, the
export and the statement timeout, with the settings on the API's own role."""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import psycopg
import pytest
from django.db import connection

from bench import servers
from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create
from crm.tests.processes import needs_programs

pytestmark = [pytest.mark.django_db(transaction=True), needs_programs("nginx", "pgbouncer")]


@pytest.fixture
def pooled(tmp_path, settings):
    settings.CRM_STATEMENT_TIMEOUT_MS = 700  # the role's, once pooled_role() has set it
    customer_dataset_replace(n=300, chunk=300, seed=8)
    token = api_user_create(username="pooled-writer", read_only=False)
    with servers.serving_stack(
        tmp_path,
        secret_key="p" * 64,
        token=token,
        workers=2,
        pgbouncer=True,
        extra_env={"CRM_THROTTLE_USER": "none", "CRM_THROTTLE_ANON": "none"},
    ) as stack:
        yield stack, token


def call(stack, token: str, path: str, method: str = "GET", body: dict | None = None):
    request = urllib.request.Request(
        stack.url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_cursor_pages_walk_every_customer_once(pooled):
    stack, token = pooled
    ids, path = [], "/api/users/?ordering=-relationship__points&page_size=37"
    while path:
        status, body = call(stack, token, path)
        assert status == 200, body
        page = json.loads(body)
        ids += [row["id"] for row in page["results"]]
        link = urlsplit(page["next"]) if page["next"] else None
        path = link and f"{link.path}?{link.query}"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT appuser_id FROM core_customerrelationship ORDER BY points DESC, appuser_id DESC"
        )
        assert ids == [row[0] for row in cursor.fetchall()]


def test_writes_and_the_export_go_through_the_pooler(pooled):
    stack, token = pooled
    customer = {
        "first_name": "Pia",
        "last_name": "Pooled",
        "gender": "f",
        "customer_id": "POOL-1",
        "phone_number": "+43 1 999",
        "address": {
            "street": "Gasse",
            "street_number": "1",
            "city_code": "1010",
            "city": "Vienna",
            "country": "Austria",
        },
    }
    status, body = call(stack, token, "/api/users/", "POST", customer)
    assert status == 201, body
    pk = json.loads(body)["id"]
    status, body = call(stack, token, f"/api/users/{pk}/", "PATCH", {"first_name": "Pina"})
    assert (status, json.loads(body)["first_name"]) == (200, "Pina")
    status, body = call(stack, token, "/api/users/export/?format=csv")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(body.decode(), newline="")))
    assert len(rows) == 301  # the export ran to its end
    assert any(row["first_name"] == "Pina" for row in rows)
    assert call(stack, token, f"/api/users/{pk}/", "DELETE")[0] == 204
    assert call(stack, token, f"/api/users/{pk}/")[0] == 404


def test_the_roles_statement_timeout_cancels_a_slow_request(pooled):
    stack, token = pooled
    params = connection.get_connection_params()
    with psycopg.connect(
        **{k: params[k] for k in ("host", "port", "dbname", "user") if params.get(k)}
    ) as blocker:
        # Another session holds the table: the list's query waits until the
        # role's statement timeout (0.7 s here) cancels it.
        blocker.execute("LOCK TABLE core_customer_list IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        status, body = call(stack, token, "/api/users/?count=none")
        waited = time.monotonic() - started
        blocker.rollback()
    assert status == 503, body
    assert "longer than this server allows" in json.loads(body)["detail"]
    assert waited < 20, "cancelled by the timeout, not by the lock's release"
    assert call(stack, token, "/api/users/?count=none")[0] == 200


def test_pooled_sessions_carry_the_apis_settings(pooled):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
            "WHERE r.rolname = %s AND s.setdatabase = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())",
            [servers.POOLED_ROLE],
        )
        (config,) = cursor.fetchone()
    assert "statement_timeout=700" in config
    assert "max_parallel_workers_per_gather=0" in config
    assert "pg_trgm.similarity_threshold=0.25" in config
