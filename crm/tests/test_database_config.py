"""Database selection from the environment: DATABASE_URL or the embedded server, replicas, pools."""

from __future__ import annotations

import os
import uuid

import pytest
from django.db import connection
from django.db.utils import ConnectionHandler

from crm.errors import ConfigurationError
from crm.postgres.config import database_from_url, databases
from crm.tests.processes import database_url, manage


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


def test_a_multi_host_url_becomes_libpqs_host_and_port_lists():
    """What a Patroni cluster's clients connect with: libpq picks the node."""
    config = database_from_url(
        "postgresql://crm:pw@127.0.0.11:5441,127.0.0.12:5442,[::1]:5443/crm"
        "?target_session_attrs=read-write&connect_timeout=2",
        "DATABASE_URL",
    )
    assert (config["HOST"], config["PORT"]) == ("127.0.0.11,127.0.0.12,::1", "5441,5442,5443")
    assert (config["USER"], config["PASSWORD"], config["NAME"]) == ("crm", "pw", "crm")
    assert config["OPTIONS"] == {"target_session_attrs": "read-write", "connect_timeout": 2}
    same_port = database_from_url("postgresql://u@a,b:6432,c/db", "DATABASE_URL")
    assert (same_port["HOST"], same_port["PORT"]) == ("a,b,c", "5432,6432,5432")
    no_port = database_from_url("postgresql://u@a,b/db", "DATABASE_URL")
    assert (no_port["HOST"], no_port["PORT"]) == ("a,b", "")
    config = databases(
        {
            "DATABASE_REPLICA_URLS": "postgresql://u@a:1,b:2/db?target_session_attrs=standby,"
            "postgresql://u@c/db"
        },
        statement_timeout_ms=2000,
    )
    assert [
        (config[alias]["HOST"], config[alias]["PORT"]) for alias in ("replica_1", "replica_2")
    ] == [
        ("a,b", "1,2"),
        ("c", ""),
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u@a:1,b:x/db", "DATABASE_URL is malformed"),
        ("postgresql://u@a:1,,b/db", "DATABASE_URL is malformed"),
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


def test_pool_and_pgbouncer_settings_are_read_from_the_environment():
    pooled = databases(
        {"DATABASE_POOL": "1", "DATABASE_PGBOUNCER": "1"}, statement_timeout_ms=2000
    )["default"]
    assert pooled["OPTIONS"]["pool"] == {"min_size": 2, "max_size": 8, "timeout": 5}
    assert pooled["CONN_MAX_AGE"] == 0, "Django refuses persistent connections with a pool"
    assert pooled["DISABLE_SERVER_SIDE_CURSORS"] is True
    plain = databases({}, statement_timeout_ms=2000)["default"]
    assert "pool" not in plain["OPTIONS"]
    assert (plain["CONN_MAX_AGE"], plain["DISABLE_SERVER_SIDE_CURSORS"]) == (60, False)


def test_replicas_keep_their_own_connection_parameters_and_the_request_limits():
    config = databases(
        {
            "DATABASE_URL": "postgresql://crm@primary:5432/crm",
            "DATABASE_REPLICA_URLS": "postgresql://crm@/crm?host=/run/standby&port=5433",
        },
        statement_timeout_ms=1500,
        lock_timeout_ms=700,
    )
    replica = config["replica_1"]
    assert replica["OPTIONS"]["host"] == "/run/standby"
    assert "-c statement_timeout=1500" in replica["OPTIONS"]["options"]
    assert "-c lock_timeout=700" in replica["OPTIONS"]["options"]
    assert "statement_timeout" not in config["default"]["OPTIONS"]["options"]
    assert replica["TEST"] == {"MIRROR": "default"}


def test_a_pooled_configuration_serves_queries_from_psycopgs_pool(db):
    environ = {**os.environ, **connection.child_environment(), "DATABASE_POOL": "1"}
    config = databases(environ, statement_timeout_ms=2000)["default"]
    pooled = ConnectionHandler({"default": config})["default"]
    try:
        with pooled.cursor() as cursor:
            cursor.execute("SELECT current_database()")
            assert cursor.fetchone()[0] == connection.settings_dict["NAME"]
        assert type(pooled.pool).__name__ == "ConnectionPool"
    finally:
        pooled.close()
        pooled.close_pool()


def test_sessions_set_what_the_list_needs_whatever_the_server():
    """jit, work_mem and random_page_cost per session, not by the embedded
    server's ALTER SYSTEM tuning: an external PostgreSQL has its defaults."""
    options = databases({"DATABASE_URL": "postgresql://u@h/db"}, statement_timeout_ms=2000)[
        "default"
    ]["OPTIONS"]["options"]
    for setting in ("-c jit=off", "-c work_mem=32MB", "-c random_page_cost=1.1"):
        assert setting in options


@pytest.mark.django_db
def test_a_live_session_has_them():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('jit'), current_setting('work_mem'), "
            "current_setting('random_page_cost')"
        )
        assert cursor.fetchone() == ("off", "32MB", "1.1")
