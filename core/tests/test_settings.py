"""Database selection: DATABASE_URL when set, the embedded server otherwise, clear errors."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from crm.errors import ConfigurationError
from crm.settings import database_from_url

from .conftest import database_url, manage


def test_database_url_selects_an_external_postgresql():
    config = database_from_url("postgresql://crm:secret@db.example:6543/crm_prod", "DATABASE_URL")
    assert config["ENGINE"] == "crm.postgres"
    assert (config["HOST"], config["PORT"], config["NAME"], config["USER"]) == (
        "db.example",
        6543,
        "crm_prod",
        "crm",
    )
    assert "EMBEDDED_DATA_DIR" not in config


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "must be a postgresql:// URL"),
        ("sqlite:///db.sqlite3", "must be a postgresql:// URL"),
        ("postgresql://u@h:notaport/db", "DATABASE_URL is malformed"),
        ("postgresql://u@h:5432/", "names no database"),
    ],
)
def test_a_malformed_database_url_is_refused_naming_the_variable(url, message):
    with pytest.raises(ConfigurationError, match=message) as excinfo:
        database_from_url(url, "DATABASE_URL")
    assert "DATABASE_URL" in str(excinfo.value)


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


@pytest.mark.django_db
def test_migrations_apply_from_zero_through_database_url():
    """A brand-new database, reached through DATABASE_URL, migrates to the current models."""
    name = f"crm_migrate_{uuid.uuid4().hex[:8]}"
    with connection._nodb_cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {"DATABASE_URL": database_url(name)}
        result = manage("migrate", "--no-input", env=env)
        assert result.returncode == 0, result.stderr
        assert "Applying core.0002_initial... OK" in result.stdout
        check = manage("makemigrations", "--check", "--dry-run", env=env)
        assert check.returncode == 0, f"models and migrations differ:\n{check.stdout}"
        plan = manage("migrate", "--plan", env=env)
        assert "No planned migration operations." in plan.stdout
    finally:
        with connection._nodb_cursor() as cursor:
            cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
