"""Read replicas on a real streaming-replication pair, and the router's decisions."""

from __future__ import annotations

import json
import textwrap

import pytest
from django.db import connection, models
from django.test import RequestFactory, override_settings

from core.models import AppUser
from crm import replicas
from crm.postgres import embedded

from .conftest import manage

# -- the router's decisions (no replica servers needed) --------------------------


class FakeReplicas:
    def __init__(self, monkeypatch, healthy: dict[str, bool]) -> None:
        monkeypatch.setattr(replicas, "replica_aliases", lambda: list(healthy))
        monkeypatch.setattr(replicas, "replica_is_healthy", lambda alias: healthy[alias])


@pytest.fixture
def router():
    return replicas.ReplicaRouter()


def test_reads_of_customers_go_to_a_healthy_replica(router, monkeypatch):
    FakeReplicas(monkeypatch, {"replica_1": True})
    assert router.db_for_read(AppUser) == "replica_1"


def test_writes_always_go_to_the_primary(router, monkeypatch):
    FakeReplicas(monkeypatch, {"replica_1": True})
    assert router.db_for_write(AppUser) == "default"


def test_users_and_tokens_are_read_from_the_primary(router, monkeypatch):
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

    FakeReplicas(monkeypatch, {"replica_1": True})
    assert router.db_for_read(User) == "default"
    assert router.db_for_read(Token) == "default"


@pytest.mark.django_db(transaction=True)
def test_reads_inside_a_transaction_go_to_the_primary(router, monkeypatch):
    from django.db import transaction

    FakeReplicas(monkeypatch, {"replica_1": True})
    with transaction.atomic():
        assert router.db_for_read(AppUser) == "default"
    assert router.db_for_read(AppUser) == "replica_1"


def test_unhealthy_replicas_are_skipped_and_the_primary_is_the_fallback(router, monkeypatch):
    FakeReplicas(monkeypatch, {"replica_1": False, "replica_2": True})
    assert {router.db_for_read(AppUser) for _ in range(6)} == {"replica_2"}
    FakeReplicas(monkeypatch, {"replica_1": False, "replica_2": False})
    assert router.db_for_read(AppUser) == "default"


def test_healthy_replicas_share_the_reads(router, monkeypatch):
    FakeReplicas(monkeypatch, {"replica_1": True, "replica_2": True})
    assert {router.db_for_read(AppUser) for _ in range(6)} == {"replica_1", "replica_2"}


def test_without_replicas_everything_is_the_primary(router):
    assert router.db_for_read(AppUser) == "default"
    assert router.allow_migrate("replica_1", "core") is False
    assert router.allow_migrate("default", "core") is True


def test_a_write_pins_its_client_to_the_primary_for_a_while(monkeypatch):
    seen = []
    FakeReplicas(monkeypatch, {"replica_1": True})
    router = replicas.ReplicaRouter()

    def view(request):
        from django.http import HttpResponse

        seen.append(router.db_for_read(AppUser))
        return HttpResponse(status=201 if request.method == "POST" else 200)

    middleware = replicas.ReadYourWritesMiddleware(view)
    factory = RequestFactory()
    response = middleware(factory.post("/api/users/"))
    cookie = response.cookies[replicas.COOKIE].value
    middleware(factory.get("/api/users/", HTTP_COOKIE=f"{replicas.COOKIE}={cookie}"))
    middleware(factory.get("/api/users/"))
    middleware(factory.get("/api/users/", HTTP_COOKIE=f"{replicas.COOKIE}=forged"))
    with override_settings(CRM_READ_YOUR_WRITES_SECONDS=-1):
        expired = middleware(factory.post("/api/users/")).cookies[replicas.COOKIE].value
    middleware(factory.get("/api/users/", HTTP_COOKIE=f"{replicas.COOKIE}={expired}"))
    assert seen == [
        "default",  # the write itself
        "default",  # its client, right after
        "replica_1",  # another client
        "replica_1",  # a forged cookie
        "default",  # a write whose window is over at once
        "replica_1",  # ... so its client reads from the replica
    ]


# -- a real primary and hot standby ------------------------------------------------

DRIVER = textwrap.dedent(
    """
    import json, time
    from django.db import connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from core.services import api_user_create
    from crm import replicas
    from crm.postgres import embedded
    from pathlib import Path

    out = {}
    token = api_user_create(username="replica-test", read_only=False)
    headers = {"authorization": f"Token {token}"}

    def served_by(client, url, **kwargs):
        with CaptureQueriesContext(connections["replica_1"]) as on_replica:
            response = client.get(url, **kwargs)
        # The page's own query, not the router's health check.
        return response, any("core_appuser" in q["sql"] for q in on_replica.captured_queries)

    reader = Client(headers=headers)
    response, replica = served_by(reader, "/api/users/?page_size=5")
    with connections["replica_1"].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        out["replica_in_recovery"] = cursor.fetchone()[0]
    out["list"] = [response.status_code, replica]

    writer = Client(headers=headers)
    body = {"first_name": "Rita", "last_name": "Replica", "gender": "f", "customer_id": "REP-1",
            "phone_number": "+43 1 000", "address": {"street": "A", "street_number": "1",
            "city_code": "1010", "city": "Vienna", "country": "Austria"}}
    created = writer.post("/api/users/", body, content_type="application/json")
    response, replica = served_by(writer, "/api/users/?customer_id=REP-1")
    out["read_your_write"] = [created.status_code, response.json()["count"], replica]

    deadline = time.monotonic() + 10
    while True:
        response, replica = served_by(reader, "/api/users/?customer_id=REP-1")
        if response.json()["count"] == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    out["replicated"] = [response.json()["count"], replica]

    replica_dir = Path(REPLICA_DIR)
    embedded.stop(replica_dir)
    replicas.forget_health()
    response, replica = served_by(reader, "/api/users/?page_size=5")
    out["replica_down"] = [response.status_code, replica]

    embedded.ensure_running(replica_dir, "crm", embedded.REPLICATION_TUNING)
    replicas.forget_health()
    deadline = time.monotonic() + 20
    while True:
        response, replica = served_by(reader, "/api/users/?page_size=5")
        if replica or time.monotonic() > deadline:
            break
        time.sleep(0.2)
        replicas.forget_health()
    out["replica_back"] = [response.status_code, replica]
    print("RESULT " + json.dumps(out))
    """
)


@pytest.mark.embedded_server
def test_a_replicated_pair_serves_reads_from_the_standby_and_falls_back(tmp_path):
    primary, replica = tmp_path / "primary", tmp_path / "replica"
    try:
        embedded.ensure_running(primary, "crm", embedded.REPLICATION_TUNING)
        env = {"DATABASE_URL": embedded.status(primary).conninfo("crm")}
        assert manage("migrate", env=env).returncode == 0
        generated = manage("generate_data", "--n", "800", "--chunk", "800", "--quiet", env=env)
        assert generated.returncode == 0, generated.stderr
        embedded.base_backup(primary, replica)
        embedded.ensure_running(replica, "crm", embedded.REPLICATION_TUNING)
        env["DATABASE_REPLICA_URLS"] = embedded.status(replica).conninfo("crm")
        env["CRM_REPLICA_CHECK_SECONDS"] = "0"
        script = f"REPLICA_DIR = {str(replica)!r}\n" + DRIVER
        result = manage("shell", "-c", script, env=env, timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
        out = json.loads(line.removeprefix("RESULT "))
    finally:
        embedded.stop(replica)
        embedded.stop(primary)
    assert out["replica_in_recovery"] is True
    assert out["list"] == [200, True], "list traffic reaches the replica"
    assert out["read_your_write"] == [201, 1, False], "the writer reads its write from the primary"
    assert out["replicated"] == [1, True], "the replica serves the new customer once replicated"
    assert out["replica_down"] == [200, False], "reads fall back to the primary"
    assert out["replica_back"] == [200, True], "and return to the replica when it is back"


# -- what the Citus plan (docs/scaling.md) relies on, checked -----------------------


def test_the_loyalty_record_is_keyed_by_the_customer_id():
    """Distributed by the customer id, the record co-locates with its customer."""
    from core.models import CustomerRelationship

    pk = CustomerRelationship._meta.pk
    assert pk.name == "appuser"
    assert pk.related_model is AppUser


@pytest.mark.django_db
def test_generated_customers_share_their_id_with_their_address():
    from core.services import customer_dataset_replace

    customer_dataset_replace(n=50, chunk=50)
    assert not AppUser.objects.exclude(address_id=models.F("id")).exists()


def test_pool_and_pgbouncer_settings_are_read_from_the_environment():
    script = (
        "from django.conf import settings; d = settings.DATABASES['default']; "
        "print(d['OPTIONS'].get('pool'), d['CONN_MAX_AGE'], d['DISABLE_SERVER_SIDE_CURSORS'])"
    )
    pooled = manage(
        "shell", "-v", "0", "-c", script, env={"DATABASE_POOL": "1", "DATABASE_PGBOUNCER": "1"}
    )
    assert pooled.returncode == 0, pooled.stderr
    assert pooled.stdout.strip() == "{'min_size': 2, 'max_size': 8, 'timeout': 5} 0 True"
    plain = manage("shell", "-v", "0", "-c", script)
    assert plain.stdout.strip() == "None 60 False"


def test_a_pooled_configuration_serves_queries_from_psycopgs_pool(db):
    script = (
        "from django.db import connection; c = connection.cursor(); c.execute('SELECT 1'); "
        "print(type(connection.pool).__name__)"
    )
    result = manage(
        "shell",
        "-v",
        "0",
        "-c",
        script,
        env={**connection.child_environment(), "DATABASE_POOL": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ConnectionPool"
