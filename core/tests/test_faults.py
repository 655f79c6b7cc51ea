"""Faults with real processes: a load killed mid-COPY, a database that goes away and comes back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from django.db import connection

from core import load
from core.services import DATASET_LOCK_KEY
from crm.postgres import embedded

from .conftest import REPO, manage
from .test_generate_data import schema_snapshot, stray_tables, table_digest


@pytest.mark.django_db(transaction=True)
def test_sigkill_in_the_middle_of_copy_leaves_the_previous_data_intact(reports_dir):
    from django.core.management import call_command

    call_command("generate_data", n=2000, chunk=500, quiet=True)
    before_rows, before_schema = table_digest(), schema_snapshot()
    child = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "manage.py"),
            "generate_data",
            "--n",
            "3000000",
            "--chunk",
            "20000",
        ],
        cwd=REPO,
        env={**os.environ, **connection.child_environment()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Wait until the child's COPY is under way on the server.
        deadline = time.monotonic() + 60
        copying = False
        while time.monotonic() < deadline and not copying:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_progress_copy WHERE tuples_processed > 0"
                )
                copying = cursor.fetchone()[0] > 0
            time.sleep(0.05)
        assert copying, "the child never started copying"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    # The server notices the dead client and rolls its transaction back.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s",
                [DATASET_LOCK_KEY & 0xFFFFFFFF],
            )
            if cursor.fetchone()[0] == 0 and not stray_tables():
                break
        time.sleep(0.2)
    assert table_digest() == before_rows
    assert schema_snapshot() == before_schema
    assert stray_tables() == []
    # And the next load is not refused by a lock the killed one held.
    call_command("generate_data", n=100, chunk=100, quiet=True)


@pytest.mark.embedded_server
def test_api_answers_503_while_the_database_is_down_and_recovers_by_itself(tmp_path):
    data_dir = tmp_path / "pgdata"
    env = {"CRM_PGDATA": str(data_dir), "DATABASE_URL": ""}
    try:
        assert manage("migrate", env=env).returncode == 0
        assert (
            manage("generate_data", "--n", "700", "--chunk", "700", "--quiet", env=env).returncode
            == 0
        )
        token = manage(
            "create_api_user", "--username", "probe", "--read-only", env=env
        ).stdout.strip()
        port = load.free_port()
        # One worker: a worker that has never connected would start the
        # embedded server again on its first connection (first-use start).
        server = load.start_gunicorn(
            port, 1, "k" * 64, tmp_path / "gunicorn.log", {**env, "DATABASE_NAME": "crm"}
        )
        try:
            load.wait_ready(port, token, server)

            def get() -> tuple[int, dict]:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/users/?page_size=5",
                    headers={"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"},
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        return response.status, response.headers
                except urllib.error.HTTPError as error:
                    return error.code, error.headers

            assert get()[0] == 200
            embedded.stop(data_dir)
            down = [get() for _ in range(20)]
            assert {status for status, _ in down} == {503}
            assert all(headers["Retry-After"] == "5" for _, headers in down)
            embedded.ensure_running(data_dir, "crm")
            deadline = time.monotonic() + 20
            while get()[0] != 200:
                assert time.monotonic() < deadline, "the API did not recover"
                time.sleep(0.2)
            for _ in range(20):
                assert get()[0] == 200
            # Repeated failures leaked no connections: one for the one worker.
            import psycopg

            with psycopg.connect(embedded.status(data_dir).conninfo("crm")) as probe:
                clients = probe.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = 'crm' "
                    "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                ).fetchone()[0]
            assert clients <= 1
        finally:
            load.stop(server)
    finally:
        embedded.stop(data_dir)
