"""A setting that is bad, or a database that cannot be configured or reached, ends
manage.py and gunicorn with one line naming why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.servers import free_port
from crm.tests.processes import REPO, manage


def test_an_unreachable_database_is_one_line_naming_variable_and_host():
    result = manage("migrate", env={"DATABASE_URL": "postgresql://crm@127.0.0.1:9/crm"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "DATABASE_URL" in lines[0]
    assert "127.0.0.1:9" in lines[0]


def test_a_malformed_database_url_is_one_line_at_the_command_line():
    result = manage("check", env={"DATABASE_URL": "mysql://u@h/db"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: DATABASE_URL must be a postgresql:// URL (this project runs on PostgreSQL only), "
        "got scheme 'mysql'"
    ]


def test_an_unwritable_embedded_folder_is_one_line_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = manage("migrate", env={"CRM_PGDATA": str(blocker / "pgdata"), "DATABASE_URL": ""})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert str(blocker / "pgdata") in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- a bad setting under gunicorn and at every command: its one line, once ------

#: Production settings whose secret key is the README's placeholder.
PLACEHOLDER_KEY = {
    "CRM_ENV": "production",
    "DJANGO_ALLOWED_HOSTS": "crm.example.com",
    "DJANGO_SECRET_KEY": "…",
}
SECRET_KEY_LINE = (
    "error: DJANGO_SECRET_KEY must be set to a random value of at least 50 characters "
    "in production (python -c 'import secrets; print(secrets.token_urlsafe(64))')"
)


def gunicorn(env: dict[str, str]) -> subprocess.CompletedProcess:
    """gunicorn as the README runs it, until it exits by itself."""
    return subprocess.run(
        [Path(sys.executable).with_name("gunicorn"), "-c", "python:crm.gunicorn_conf", "crm.wsgi"],
        cwd=REPO,
        env={**os.environ, "CRM_BIND": f"127.0.0.1:{free_port()}", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def errors(output: str) -> list[str]:
    """What gunicorn printed but its own progress lines ("[INFO] Starting gunicorn")."""
    return [line for line in output.strip().splitlines() if "[INFO]" not in line]


def test_a_placeholder_secret_key_stops_gunicorn_with_its_one_line_before_any_worker():
    result = gunicorn({**PLACEHOLDER_KEY, "GUNICORN_WORKERS": "3"})
    assert result.returncode == 1
    assert errors(result.stderr) == [SECRET_KEY_LINE], result.stderr
    assert "Booting worker" not in result.stderr, "checked in the master, before forking"
    assert result.stdout == ""


def test_a_malformed_gunicorn_variable_stops_it_with_one_line():
    result = gunicorn({"GUNICORN_WORKERS": "three"})
    assert result.returncode == 1
    assert errors(result.stderr) == ["error: GUNICORN_WORKERS must be an integer, got 'three'"]


@pytest.mark.parametrize(
    "command",
    [
        ["check"],
        ["migrate"],
        ["runserver", "--noreload"],
        # Django sets a settings error aside for these and carries on without settings.
        ["help"],
        ["shell", "-c", "print('ran without settings')"],
    ],
    ids=lambda command: command[0],
)
def test_a_placeholder_secret_key_stops_every_command_with_its_one_line(command):
    if command[0] == "runserver":
        command = [*command, f"127.0.0.1:{free_port()}"]
    result = manage(*command, env=PLACEHOLDER_KEY)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [SECRET_KEY_LINE]
    assert "ran without settings" not in result.stdout
