"""``manage.py import_customers`` as a user runs it: a real process, its
progress on stderr, its summary (``--json``: the last line), and killed in
the middle of its writes, nothing half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from core.dataset.sessions import separate_connection
from core.tests.dataset.snapshots import table_digest
from core.tests.read_table import drift
from crm.tests.processes import REPO, manage

from .test_imports import csv_of, exported, loaded, rows_of

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["loaded"]


def many_rows(template: list[dict[str, str]], n: int) -> list[dict[str, str]]:
    """``n`` new customers shaped like the export's rows, and every exported
    one with a new street: creates and updates both."""
    new = [
        dict(
            template[i % len(template)],
            id="",
            customer_id=f"IMP-{i}",
            email=f"imported.{i}@example.com",
            # A new record starts now: no last activity before that.
            relationship_last_activity="",
        )
        for i in range(n)
    ]
    changed = [dict(row, address_street="Importweg") for row in template]
    return changed + new


def import_command(path: Path, *args: str) -> subprocess.CompletedProcess:
    return manage("import_customers", str(path), *args, env=connection.child_environment())


def test_the_command_prints_progress_and_its_summary_as_json(loaded, tmp_path):
    rows = rows_of(exported())
    rows[0]["first_name"] = "Commanded"
    path = tmp_path / "customers.csv"
    path.write_bytes(csv_of(rows))
    done = import_command(path, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["created"], summary["updated"], summary["unchanged"]) == (0, 1, 59)
    assert "…" in done.stderr


def test_a_dry_run_of_the_command_writes_nothing(loaded, tmp_path):
    rows = rows_of(exported())
    rows[0]["first_name"] = "Dry"
    path = tmp_path / "customers.csv"
    path.write_bytes(csv_of(rows))
    before = table_digest()
    done = import_command(path, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "Would import: 0 created, 1 updated, 59 unchanged" in done.stdout
    assert table_digest() == before


def test_bad_rows_fail_the_command_naming_them(loaded, tmp_path):
    rows = rows_of(exported())
    rows[9]["gender"] = "x"
    path = tmp_path / "customers.csv"
    path.write_bytes(csv_of(rows))
    done = import_command(path)
    assert done.returncode != 0
    assert "line 11, gender:" in done.stdout
    assert "nothing written" in done.stderr


def test_a_missing_file_is_named(loaded, tmp_path):
    done = import_command(tmp_path / "absent.csv")
    assert done.returncode != 0
    assert "absent.csv: no such file" in done.stderr


def test_an_import_killed_while_it_writes_leaves_nothing_written(loaded, tmp_path):
    """The test holds a lock the import's writes of addresses need: the child
    has staged, validated and written customers when it waits for it, and is
    killed there (SIGKILL). Its transaction never commits."""
    path = tmp_path / "many.csv"
    path.write_bytes(csv_of(many_rows(rows_of(exported()), 20_000)))
    before = table_digest()
    holder = separate_connection()
    holder.autocommit = False
    holder.execute("LOCK TABLE core_address IN SHARE MODE")
    monitor = separate_connection()
    child = subprocess.Popen(
        [sys.executable, str(REPO / "manage.py"), "import_customers", str(path)],
        cwd=REPO,
        env={**os.environ, **connection.child_environment()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    waiting = None
    try:
        deadline = time.monotonic() + 120
        while True:
            assert child.poll() is None, f"the child ended first: {child.stdout.read()}"
            if time.monotonic() > deadline:
                child.kill()
                raise AssertionError(child.stdout.read())
            waiting = monitor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).fetchone()
            if waiting:
                break
            time.sleep(0.05)
        # It has written customers (uncommitted): it holds their table's write lock.
        (wrote,) = monitor.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = %s AND mode = 'RowExclusiveLock' "
            "AND relation = 'core_appuser'::regclass",
            waiting,
        ).fetchone()
        assert wrote
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        holder.rollback()
        holder.close()
        # The server ends the killed client's session when it next writes to it.
        deadline = time.monotonic() + 30
        while (
            waiting
            and monitor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", waiting
            ).fetchone()[0]
        ):
            assert time.monotonic() < deadline, "the killed import's session stayed"
            time.sleep(0.05)
    monitor.close()
    assert table_digest() == before
    assert drift() == []
