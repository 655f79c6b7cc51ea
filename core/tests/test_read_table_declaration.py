"""The read table's declaration (core.models.CustomerRow) and everything made
from it agree: the table and its triggers as installed, the migrations that
froze them, the API's row, the loader's columns."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from core.customers.columns import ROW
from core.dataset.generation import CustomerDataset
from core.management.commands.makemigrations import frozen_triggers
from core.models import CustomerRow, database_triggers
from core.read_table import read_table

TABLE = read_table(CustomerRow)

pytestmark = pytest.mark.django_db


def test_the_migrations_froze_what_the_declarations_generate():
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    frozen = frozen_triggers(graph)
    generated = {trigger.name: trigger for trigger in database_triggers()}
    assert sorted(frozen) == sorted(generated)
    for name, trigger in generated.items():
        assert frozen[name] == trigger, f"{name}: run makemigrations"


def test_makemigrations_has_nothing_to_add():
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def test_each_trigger_is_installed_as_generated():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.tgname, c.relname, p.prosrc FROM pg_trigger t "
            "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid "
            "WHERE NOT t.tgisinternal AND p.proname LIKE 'core\\_%'"
        )
        installed = {name: (table, source) for name, table, source in cursor.fetchall()}
    for trigger in database_triggers():
        assert installed.get(trigger.name) == (trigger.table, trigger.source), trigger.name


def test_the_table_has_the_declared_columns():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "ORDER BY ordinal_position",
            [CustomerRow._meta.db_table],
        )
        columns = [name for (name,) in cursor.fetchall()]
    assert sorted(columns) == sorted(field.column for field in CustomerRow._meta.concrete_fields)
    generated = {f.column for f in CustomerRow._meta.concrete_fields if f.generated}
    assert set(TABLE.stored_columns()) == set(columns) - generated


def test_the_api_row_is_every_declared_column_but_the_join_keys():
    shown = [c.name for c in TABLE.columns if not c.source.is_relation]
    assert [column.column for column in ROW] == shown
    assert "address_id" not in shown


def test_the_loader_copies_every_declared_column():
    assert sorted(CustomerDataset.CUSTOMER_LIST_COLUMNS) == sorted(TABLE.stored_columns())
