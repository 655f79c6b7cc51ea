"""Running this project as a user would, in child processes, against the tests' database."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.db import connection

REPO = Path(__file__).resolve().parents[2]


def database_url(dbname: str) -> str:
    """A DATABASE_URL for ``dbname`` on the server the tests run against."""
    params = connection.get_connection_params()
    host = quote(str(params.get("host") or "localhost"), safe="")
    user = params.get("user") or "postgres"
    return f"postgresql://{user}@{host}:{params.get('port') or 5432}/{dbname}"


def manage(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    """Run ``python manage.py ...`` in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def nested_pytest(tmp_path: Path) -> list[str]:
    """Options of a pytest run inside a test: the root conftest as a plugin (for
    test files outside the repository), and temporary folders in the test's own.

    Without ``--basetemp`` the inner run would take its folders under the
    user's shared ``pytest-of-<user>``, and make that folder private again
    (pytest does, at start): under xdist, an embedded server that another
    worker runs there as its own system user (as root) would lose its data
    folder.
    """
    return ["-p", "conftest", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "basetemp")]


def missing_programs(*names: str) -> list[str]:
    """The programs of ``names`` found neither on the PATH nor in /usr/sbin (where
    Debian puts nginx and pgbouncer, off an ordinary user's PATH); a name that
    is a path (an nginx module's file) must exist."""
    return [
        name
        for name in names
        if (not Path(name).exists() if "/" in name else shutil.which(name) is None)
        and not Path(f"/usr/sbin/{name}").exists()
    ]


def needs_programs(*names: str) -> pytest.MarkDecorator:
    """Mark a test that drives these system programs (nginx, pgbouncer, chromium, ...).

    Without them it is skipped on a laptop, saying which to ``apt-get
    install``, and FAILS in CI (``CI=true``): CI installs them (``.ci/run``),
    and a test that vanished from a green run would hide exactly what it
    tests. The check runs when the test starts (the root conftest's
    ``pytest_runtest_setup``), so every such test goes through this one rule.
    """
    return pytest.mark.programs(*names)


#: The tables a read of customers may touch: the tables of record, and the
#: list's read table (which the list, its counts, the export and the admin read).
CUSTOMER_TABLES = ("core_appuser", "core_customer_list")


@contextlib.contextmanager
def table_locked(*tables: str) -> Iterator[None]:
    """Another session holds ``tables`` (by default :data:`CUSTOMER_TABLES`) in
    ACCESS EXCLUSIVE mode, what a migration's ALTER TABLE takes, until the
    block ends."""
    params = connection.get_connection_params()
    blocker = psycopg.connect(
        host=params["host"], port=params.get("port"), user=params["user"], dbname=params["dbname"]
    )
    try:
        blocker.execute(
            f"LOCK TABLE {', '.join(tables or CUSTOMER_TABLES)} IN ACCESS EXCLUSIVE MODE"
        )
        yield
    finally:
        blocker.rollback()
        blocker.close()
