"""The statement and lock timeouts: a slow query or a held lock is a JSON 503, the
worker moves on, and every session a request opens has them."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from bench import servers
from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create
from core.tests.clients import api_client
from crm.tests.http_client import call
from crm.tests.processes import needs_programs, table_locked

URL = "/api/users/"


@pytest.mark.django_db(transaction=True)
def test_a_query_over_the_statement_timeout_is_a_json_503(settings):

    customer_dataset_replace(n=50, chunk=50)
    settings.CRM_STATEMENT_TIMEOUT_MS = 300
    client = api_client()
    try:
        client.get(URL)
        # Another session holds the tables: the list's query waits, and the
        # timeout cancels it.
        with table_locked():
            response = client.get(f"{URL}?count=none")
        assert response.status_code == 503
        assert "longer than this server allows" in response.json()["detail"]
        assert response["Retry-After"] == "5"
        assert client.get(URL).status_code == 200, "the next request is served normally"
    finally:
        # The session keeps the requests' 300 ms limit: the flush after the
        # test (TRUNCATE of every table) ran over it on a loaded machine.
        connection.close()


# -- on real processes: gunicorn behind the project's nginx ---------------------


#: The served limits: a fifth of the defaults (2,000 and 1,500 ms), which each
#: of the six refused requests below waits out in turn; the statement timeout
#: stays above the lock timeout, as by default, so a lock ends in the lock's
#: answer. A query of these 50 customers takes a few milliseconds.
SERVED_LIMITS = {"CRM_STATEMENT_TIMEOUT_MS": "400", "CRM_LOCK_TIMEOUT_MS": "300"}


@pytest.fixture
def served(tmp_path, request):
    """Three gunicorn workers behind nginx, with the limits ``request.param`` sets."""
    customer_dataset_replace(n=50, chunk=50, seed=4)
    token = api_user_create(username="patient", read_only=True)
    with servers.serving_stack(
        tmp_path,
        secret_key="t" * 64,
        token=token,
        workers=3,
        extra_env={
            "CRM_THROTTLE_USER": "none",
            **SERVED_LIMITS,
            **getattr(request, "param", {}),
        },
    ) as stack:
        yield stack, token


def terminate_other_sessions() -> int:
    """End every other session of the test database, as a server restart or a
    failover would: the workers' persistent connections are gone."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )
        return cursor.fetchone()[0]


def refused_in_time(stack, token: str, path: str) -> list[tuple[int, str]]:
    """Six requests: each must be answered (a worker waiting on the lock
    without a limit leaves the client hanging until the client gives up)."""
    answers = [call(stack.url, path, token=token, timeout=15) for _ in range(6)]
    return [(a.status, a.json()["detail"] if a.is_json else a.body[:80]) for a in answers]


LOCKED = (503, "The data is locked by maintenance; try again shortly.")


@pytest.mark.django_db(transaction=True)
@needs_programs("nginx")
@pytest.mark.sql  # what the server does with a session's limits, not nginx
def test_the_first_request_on_a_reconnected_session_has_the_limits(served):
    """The server ended every worker's session: the first request of each
    reconnects, and must still give up on a lock after CRM_LOCK_TIMEOUT_MS."""
    stack, token = served
    for _ in range(6):
        assert call(stack.url, "/api/users/1/", token=token).status == 200
    assert terminate_other_sessions() >= 1
    with table_locked():
        assert refused_in_time(stack, token, "/api/users/1/") == [LOCKED] * 6
    assert call(stack.url, "/api/users/1/", token=token).status == 200


@pytest.mark.django_db(transaction=True)
@needs_programs("nginx")
@pytest.mark.sql  # what the server does with a session's limits, not nginx
@pytest.mark.parametrize(
    "served", [{"DATABASE_CONN_MAX_AGE": "1", "CRM_LOCK_TIMEOUT_MS": "0"}], indirect=True
)
def test_a_session_reopened_after_conn_max_age_has_the_statement_timeout(served):
    """Django replaces a session older than CONN_MAX_AGE at its next request's
    first query; with no lock timeout, the statement timeout ends the wait."""
    stack, token = served
    for _ in range(6):
        assert call(stack.url, "/api/users/1/", token=token).status == 200
    time.sleep(1.5)  # every worker's session is now older than CONN_MAX_AGE
    with table_locked():
        answers = refused_in_time(stack, token, "/api/users/1/")
    assert {status for status, _ in answers} == {503}, answers
    assert all("longer than this server allows" in detail for _, detail in answers), answers


@pytest.mark.django_db(transaction=True)
@needs_programs("nginx")
@pytest.mark.sql  # what the server does with a session's limits, not nginx
def test_an_export_waits_for_a_lock_no_longer_than_a_request(served):
    """The export's own statement timeout is minutes long: a lock must not
    hold its worker (and the client) that long."""
    stack, token = served
    with table_locked():
        answers = refused_in_time(stack, token, "/api/users/export/?format=ndjson")
    assert answers == [LOCKED] * 6
    assert call(stack.url, "/api/users/export/", token=token).status == 200
