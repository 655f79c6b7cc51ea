"""/healthz and /readyz: what they check, what they cost, what they skip, whom they tell.

The database stopped under a real gunicorn is test_probes_database_down.py;
standbys in the readiness answer are checked on a real replicated pair in
crm/tests/test_replicas.py.
"""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings

from bench import servers
from core.security.api_users import api_user_create
from crm.observability import health
from crm.tests.http_client import call
from crm.tests.processes import needs_programs


@pytest.mark.parametrize("path", ["/healthz", "/healthz/"])
def test_liveness_answers_without_touching_the_database(path):
    """No django_db mark: pytest-django makes any connection attempt raise, so
    a query (or the statement-timeout middleware's, on a new connection)
    would fail this request."""
    connection.close()
    response = Client().get(path)
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}
    assert response["Cache-Control"] == "no-store"
    assert connection.connection is None


@pytest.mark.django_db
def test_readiness_answers_ready_when_the_database_answers_and_migrations_are_applied():
    response = Client().get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["database"]["status"] == "ok"
    assert body["database"]["ms"] >= 0
    assert "replicas" not in body, "no standbys configured"


@pytest.mark.django_db
def test_readiness_costs_at_most_one_statement_per_interval_however_often_probed(settings):
    settings.CRM_READINESS_CACHE_SECONDS = 60
    client = Client()
    client.get("/healthz")  # the handler is built: the process's requirements read
    with CaptureQueriesContext(connection) as queries:
        statuses = {client.get("/readyz").status_code for _ in range(200)}
    assert statuses == {200}
    assert len(queries) == 1
    assert "django_migrations" in queries[0]["sql"]


@pytest.mark.django_db
def test_an_expired_answer_is_checked_again(settings):
    settings.CRM_READINESS_CACHE_SECONDS = 0
    Client().get("/healthz")  # the process's requirements read
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            Client().get("/readyz")
    assert len(queries) == 3


@pytest.mark.django_db
def test_a_migration_not_applied_makes_the_process_not_ready():
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM django_migrations WHERE app = 'core' AND name = '0004_search_terms'"
        )
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["database"] == {
        "status": "migrations missing",
        "missing": ["core.0004_search_terms"],
        "ms": body["database"]["ms"],
    }


@pytest.mark.django_db(transaction=True)
def test_a_database_that_does_not_answer_in_time_is_not_ready(settings):
    """Another session locks the table the check reads: the check's own statement
    timeout ends it, the probe answers 503 quickly, and the connection's own
    timeout is left as it was."""
    settings.CRM_READINESS_TIMEOUT_MS = 200
    params = connection.get_connection_params()
    blocker = psycopg.connect(
        host=params["host"], port=params.get("port"), user=params["user"], dbname=params["dbname"]
    )
    try:
        blocker.execute("LOCK TABLE django_migrations IN ACCESS EXCLUSIVE MODE")
        response = Client().get("/readyz")
    finally:
        blocker.rollback()
        blocker.close()
    assert response.status_code == 503
    assert response.json()["database"] == {"status": "unavailable"}
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] != "200ms"
    health.forget_readiness()
    assert Client().get("/readyz").status_code == 200


@pytest.mark.django_db
def test_probes_answer_any_host_over_plain_http_in_production_mode():
    """A load balancer probes over HTTP, an orchestrator by the pod's address:
    neither the HTTPS redirect nor the host check may turn a probe away."""
    with override_settings(SECURE_SSL_REDIRECT=True, ALLOWED_HOSTS=["crm.example.com"]):
        client = Client(HTTP_HOST="10.1.2.3:8000")
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.get("/api/users/").status_code == 400, "the API still checks the host"


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_probes_take_get_and_head_only(method):
    response = getattr(Client(), method)("/healthz")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert Client().head("/healthz").status_code == 200


@pytest.mark.django_db
def test_probes_are_never_throttled(settings):
    settings.CRM_THROTTLE_RATES = {"anon": "1/minute", "user": "1/minute"}
    client = Client(REMOTE_ADDR="203.0.113.7")
    assert {client.get("/readyz").status_code for _ in range(5)} == {200}
    assert {client.get("/healthz").status_code for _ in range(5)} == {200}


# -- on real processes: through the project's nginx, from several addresses -----


@pytest.mark.django_db(transaction=True)
@needs_programs("nginx")
def test_anyone_learns_ready_or_not_and_only_the_metrics_addresses_learn_why(tmp_path):
    token = api_user_create(username="prober", read_only=True)
    with servers.serving_stack(tmp_path, secret_key="r" * 64, token=token, workers=1) as stack:
        outsider = call(stack.url, "/readyz", source="127.0.0.5")
        insider = call(stack.url, "/readyz", source="127.0.0.1")
    assert (outsider.status, outsider.json()) == (200, {"status": "ready"})
    assert insider.status == 200
    assert insider.json()["database"]["status"] == "ok"
    assert "checked_at" in insider.json()


@pytest.mark.django_db
def test_a_process_is_not_ready_until_it_holds_what_the_app_requires(settings):
    """The app's requirements (core's planning sample) are read before the
    first request; one that could not be read makes /readyz say so, and the
    probe reads it again."""
    settings.CRM_READINESS_CACHE_SECONDS = 0
    held = []

    def load(reason: str) -> None:
        if not held:
            held.append("tried")  # the first read fails (the database was down at start)
            raise psycopg.OperationalError("the database is starting up")
        held.append(reason)

    requirement = health.Requirement("test_state", load=load, loaded=lambda: "probe" in held)
    health.require(requirement)
    try:
        health.prepare_process()
        assert held == ["tried"]
        assert health.check_readiness().body["test_state"] == {"status": "loaded"}
        assert held == ["tried", "probe"]  # the probe read it again
        response = Client().get("/readyz")
        assert response.status_code == 200
        assert response.json()["test_state"] == {"status": "loaded"}
        assert response.json()["planning_sample"] == {"status": "loaded"}
    finally:
        health._requirements.pop("test_state")


@pytest.mark.django_db
def test_a_requirement_that_cannot_be_read_makes_the_process_not_ready():
    def load(reason: str) -> None:
        raise psycopg.OperationalError("no database")

    health.require(health.Requirement("test_state", load=load, loaded=lambda: False))
    try:
        response = Client().get("/readyz")
        assert response.status_code == 503
        assert response.json()["status"] == "not ready"
        assert response.json()["test_state"] == {"status": "not loaded"}
    finally:
        health._requirements.pop("test_state")
