"""A database that cannot be configured or reached ends manage.py with one line naming why."""

from __future__ import annotations

from crm.tests.processes import manage


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
