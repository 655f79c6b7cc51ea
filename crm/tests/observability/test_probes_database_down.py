"""The probes under a real gunicorn whose own embedded PostgreSQL stops and starts again."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from bench import servers
from crm.postgres import embedded
from crm.tests.processes import manage


def probe(port: int, path: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    return status, json.loads(body), time.monotonic() - started


def wait_for(port: int, path: str, status: int, seconds: float = 20) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        try:
            answer, body, _ = probe(port, path)
        except urllib.error.URLError as error:  # gunicorn is not listening yet
            answer, body = 0, str(error)
        if answer == status:
            return body
        assert time.monotonic() < deadline, f"{path} still answers {answer}: {body}"
        time.sleep(0.2)


@pytest.mark.embedded_server
def test_liveness_holds_and_readiness_follows_the_database(tmp_path):
    data_dir = tmp_path / "pgdata"
    env = {"CRM_PGDATA": str(data_dir), "DATABASE_URL": "", "DATABASE_NAME": "crm"}
    try:
        assert manage("migrate", env=env).returncode == 0
        port = servers.free_port()
        # One worker: a worker that has never connected would start the
        # embedded server again on its first connection (first-use start).
        server = servers.gunicorn_alone(
            port, workers=1, secret_key="k" * 64, log=tmp_path / "gunicorn.log", database_env=env
        )
        try:
            body = wait_for(port, "/readyz", 200, seconds=60)
            assert body["database"]["status"] == "ok"

            embedded.stop(data_dir)
            body = wait_for(port, "/readyz", 503)
            assert body == {
                "status": "not ready",
                "checked_at": body["checked_at"],
                "database": {"status": "unavailable"},
                # What the worker read before serving, it still holds.
                "planning_sample": {"status": "loaded"},
                "api_paths": {"status": "loaded"},
            }
            for _ in range(10):
                status, body, seconds = probe(port, "/healthz")
                assert (status, body) == (200, {"status": "alive"})
                assert seconds < 1, "liveness does not wait for the database"
            # Probed often, readiness answers quickly from the last check.
            answers = [probe(port, "/readyz") for _ in range(20)]
            assert {status for status, _, _ in answers} == {503}

            embedded.ensure_running(data_dir, "crm")
            assert wait_for(port, "/readyz", 200)["database"]["status"] == "ok"
            assert probe(port, "/healthz")[0] == 200
        finally:
            servers.stop(server)
    finally:
        embedded.stop(data_dir)
