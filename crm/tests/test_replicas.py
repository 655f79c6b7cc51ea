"""Read replicas on a real streaming-replication pair, and the router's decisions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.test import RequestFactory, override_settings

from core.models import AppUser
from crm import replicas
from crm.postgres import embedded
from crm.tests.processes import REPO, manage


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


def test_users_are_read_from_the_primary(router, monkeypatch):
    from django.contrib.auth.models import User

    FakeReplicas(monkeypatch, {"replica_1": True})
    assert router.db_for_read(User) == "default"
    # API tokens (core.models.ApiToken) are looked up where they are written:
    # see core/tests/security/test_authentication.py.


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
        env["CRM_READINESS_CACHE_SECONDS"] = "0"
        result = subprocess.run(
            [sys.executable, "-m", "crm.tests.replica_driver", str(replica)],
            cwd=REPO,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=180,
        )
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
    # /readyz names the standby in use and its lag, and stays ready without it.
    status, standbys = out["ready_with_standby"]
    assert status == 200
    assert standbys["replica_1"]["in_use"] is True
    assert 0 <= standbys["replica_1"]["lag_seconds"] < 5
    assert out["ready_standby_down"] == [
        200,
        {"replica_1": {"in_use": False, "lag_seconds": None, "problem": "unavailable"}},
    ]
    assert out["standby_metrics"]["in_use"] == 1
    assert 0 <= out["standby_metrics"]["lag"] < 5
    assert out["standby_metrics"]["reads"] >= 1
