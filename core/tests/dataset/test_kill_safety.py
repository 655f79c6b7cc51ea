"""A generate_data killed with SIGKILL in the middle of its work, as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from django.core.management import call_command
from django.db import connection

from core.dataset.loader import DATASET_LOCK_KEY
from crm.tests.processes import REPO

from .snapshots import schema_snapshot, stray_tables, table_digest


@pytest.mark.django_db(transaction=True)
def test_sigkill_in_the_middle_of_copy_leaves_the_previous_data_intact(reports_dir):

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
