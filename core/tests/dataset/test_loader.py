"""Replacing the dataset: counts, links, atomicity, one run at a time, fresh ids,
and every part of the tables' definitions carried over."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import F

from core.dataset import cleanup, loader, sessions
from core.dataset.cleanup import DATASET_LOCK_KEY
from core.dataset.generation import CustomerDataset
from core.dataset.loader import customer_dataset_replace
from core.dataset.sessions import separate_connection
from core.models import Address, AppUser, CustomerRelationship, CustomerRow

from .snapshots import schema_snapshot, stray_tables, table_digest
from .test_generation import AS_OF, generate

pytestmark = pytest.mark.django_db(transaction=True)


def test_creates_n_linked_rows_in_each_table(reports_dir):
    generate(1500, chunk=400)
    assert Address.objects.count() == AppUser.objects.count() == 1500
    assert CustomerRelationship.objects.count() == 1500
    # Each customer has their own address and their own loyalty record.
    assert not AppUser.objects.exclude(address_id=F("id")).exists()
    assert AppUser.objects.filter(relationship__isnull=True).count() == 0
    assert sorted(AppUser.objects.values_list("id", flat=True))[:3] == [1, 2, 3]


def test_replaces_previous_data_and_restarts_ids(reports_dir):
    generate(300)
    generate(200, seed=7)
    assert AppUser.objects.count() == 200
    assert min(AppUser.objects.values_list("id", flat=True)) == 1


def test_a_failure_mid_load_leaves_previous_data_and_indexes_intact(reports_dir, monkeypatch):
    generate(1200)
    before_rows, before_schema = table_digest(), schema_snapshot()
    original = CustomerDataset.appuser_rows

    def failing(self, start, stop):
        if start >= 600:
            raise RuntimeError("injected failure in the middle of COPY")
        return original(self, start, stop)

    monkeypatch.setattr(CustomerDataset, "appuser_rows", failing)
    with pytest.raises(RuntimeError, match="injected"):
        generate(2000, chunk=200)
    assert table_digest() == before_rows
    assert schema_snapshot() == before_schema
    assert stray_tables() == []


def test_a_second_concurrent_run_is_refused(reports_dir):
    generate(100)
    before = table_digest()
    params = connection.get_connection_params()
    other = psycopg.connect(
        host=params["host"], port=params.get("port"), user=params["user"], dbname=params["dbname"]
    )
    try:
        other.execute("SELECT pg_advisory_lock(%s)", [DATASET_LOCK_KEY])
        with pytest.raises(CommandError, match="another generate_data"):
            generate(300)
    finally:
        other.close()
    assert table_digest() == before


def test_customers_created_afterwards_get_fresh_ids(reports_dir):
    generate(500)
    address = Address.objects.create(
        street="Neubaugasse", street_number="7", city_code="1070", city="Vienna", country="Austria"
    )
    user = AppUser.objects.create(
        first_name="Nina",
        last_name="Berger",
        gender="f",
        customer_id="NEW-1",
        phone_number="+43 1 555 0101",
        address=address,
    )
    assert address.id == 501
    assert user.id == 501


def test_a_database_that_is_not_postgresql_is_refused(reports_dir, monkeypatch):
    monkeypatch.setattr(connection, "vendor", "sqlite")
    with pytest.raises(CommandError, match="needs PostgreSQL"):
        generate(10)


@pytest.mark.django_db
def test_generated_customers_share_their_id_with_their_address():

    customer_dataset_replace(n=50, chunk=50)
    assert not AppUser.objects.exclude(address_id=F("id")).exists()


def test_every_executor_loads_the_same_rows_and_schema(reports_dir):
    """Serial builds in the caller's transaction, and pools of any size."""
    generate(1000, jobs=1)
    rows, schema = table_digest(), schema_snapshot()
    generate(1000, jobs=3)
    assert (table_digest(), schema_snapshot()) == (rows, schema)
    with transaction.atomic():
        customer_dataset_replace(n=1000, chunk=1000, seed=42, as_of=AS_OF)
    assert (table_digest(), schema_snapshot()) == (rows, schema)


#: What a migration (or a DBA) may have added to the tables beyond Django's
#: defaults, and how to take it away again.
EXTRAS = [
    (
        "CREATE INDEX extra_partial ON core_appuser (last_name) INCLUDE (first_name) "
        "WHERE gender = 'o'",
        "DROP INDEX extra_partial",
    ),
    (
        "ALTER TABLE core_address ADD CONSTRAINT extra_check CHECK (street_number <> '')",
        "ALTER TABLE core_address DROP CONSTRAINT extra_check",
    ),
    (
        "ALTER TABLE core_address ADD CONSTRAINT extra_unique UNIQUE (id, city) "
        "DEFERRABLE INITIALLY DEFERRED",
        "ALTER TABLE core_address DROP CONSTRAINT extra_unique",
    ),
    (
        "CREATE STATISTICS extra_stats (ndistinct) ON city, country FROM core_address",
        "DROP STATISTICS extra_stats",
    ),
    (
        "ALTER TABLE core_appuser ALTER COLUMN last_name SET STATISTICS 500",
        "ALTER TABLE core_appuser ALTER COLUMN last_name SET STATISTICS -1",
    ),
    (
        "ALTER TABLE core_customerrelationship SET (fillfactor = 90, autovacuum_enabled = off)",
        "ALTER TABLE core_customerrelationship RESET (fillfactor, autovacuum_enabled)",
    ),
    ("COMMENT ON TABLE core_appuser IS 'customers'", "COMMENT ON TABLE core_appuser IS NULL"),
    (
        "COMMENT ON COLUMN core_appuser.customer_id IS 'their number'",
        "COMMENT ON COLUMN core_appuser.customer_id IS NULL",
    ),
    (
        "ALTER TABLE core_customerrelationship ALTER COLUMN points SET DEFAULT 7",
        "ALTER TABLE core_customerrelationship ALTER COLUMN points DROP DEFAULT",
    ),
    (
        "DO $$ BEGIN CREATE ROLE crm_test_reader; EXCEPTION WHEN duplicate_object THEN NULL; "
        "END $$; GRANT SELECT ON core_appuser TO crm_test_reader",
        "REVOKE ALL ON core_appuser FROM crm_test_reader; DROP ROLE crm_test_reader",
    ),
]


@pytest.fixture
def extras() -> Iterator[None]:
    # A role belongs to the whole server: each test database grants to its own
    # (test workers run side by side, and a role granted on in another
    # database cannot be dropped).
    reader = f'"{connection.settings_dict["NAME"]}_reader"'
    with connection.cursor() as cursor:
        for add, _remove in EXTRAS:
            cursor.execute(add.replace("crm_test_reader", reader))
    yield
    with connection.cursor() as cursor:
        for _add, remove in reversed(EXTRAS):
            cursor.execute(remove.replace("crm_test_reader", reader))


@pytest.mark.parametrize("inside_a_transaction", [False, True])
def test_what_migrations_added_to_the_tables_survives_a_load(
    reports_dir, extras, inside_a_transaction
):
    """Indexes, constraints, statistics, storage parameters, comments, defaults,
    grants: read from the catalog, so whatever the migrations made is kept."""
    generate(500)
    before = schema_snapshot()
    if inside_a_transaction:
        with transaction.atomic():
            customer_dataset_replace(n=800, chunk=300, as_of=AS_OF)
    else:
        generate(800)
    assert schema_snapshot() == before
    assert AppUser.objects.count() == 800


def test_what_a_rebuild_would_lose_is_refused_before_any_work(reports_dir):
    generate(100)
    before = table_digest()
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE extra_orders (customer_id bigint REFERENCES core_appuser (id))"
        )
    try:
        with pytest.raises(CommandError, match="extra_orders references core_appuser"):
            generate(200)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE extra_orders")
    assert table_digest() == before
    assert stray_tables() == []


def test_triggers_are_carried_over_and_do_not_fire_for_the_loaded_rows(reports_dir):
    """The shadow gets the live table's triggers at the swap: they fire for
    the writes after the load, not for each of the millions of rows it COPYs."""
    generate(100)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE extra_audit (address_id bigint); "
            "CREATE FUNCTION extra_audit_row() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO extra_audit VALUES (NEW.id); RETURN NULL; END $$; "
            "CREATE TRIGGER extra_trigger AFTER INSERT ON core_address "
            "FOR EACH ROW EXECUTE FUNCTION extra_audit_row()"
        )
    try:
        before = schema_snapshot()
        generate(200)
        assert schema_snapshot() == before
        assert Address.objects.count() == 200
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM extra_audit")
            assert cursor.fetchone()[0] == 0
            address = Address.objects.create(
                street="Ring", street_number="1", city_code="1010", city="Vienna", country="Austria"
            )
            cursor.execute("SELECT address_id FROM extra_audit")
            assert cursor.fetchall() == [(address.pk,)]
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER extra_trigger ON core_address; DROP FUNCTION extra_audit_row(); "
                "DROP TABLE extra_audit"
            )
    assert stray_tables() == []


def test_a_migration_during_the_load_makes_the_swap_refuse(reports_dir, monkeypatch):
    """The shadows were built from the definitions read at the start: swapping
    them in would silently undo the migration."""
    generate(300)
    before = table_digest()
    original = loader._Load._copy_all

    def copy_while_migrating(self, *args, **kwargs):
        with separate_connection() as other:
            other.execute("CREATE INDEX extra_during_load ON core_address (street)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(loader._Load, "_copy_all", copy_while_migrating)
    try:
        with pytest.raises(CommandError, match="core_address changed while the data was loading"):
            generate(600)
        assert table_digest() == before
        assert stray_tables() == []
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'extra_during_load'")
            assert cursor.fetchone() == (1,)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX IF EXISTS extra_during_load")


def _stray_shadow(name: str = "core_address__load") -> None:
    """What a SIGKILL between a shadow's commit and the swap leaves (or, for
    ``__old``, between the swap and the drop of the replaced table)."""
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {name} (LIKE core_address)")


@pytest.mark.parametrize("name", ["core_address__load", "core_appuser__old"])
def test_migrate_drops_the_tables_a_killed_load_left(reports_dir, capsys, name):
    _stray_shadow(name)
    call_command("migrate", verbosity=1)
    assert stray_tables() == []
    assert "Dropped the shadow tables of an interrupted generate_data" in capsys.readouterr().out


def test_the_next_load_drops_the_tables_a_killed_load_left(reports_dir):
    generate(100)
    _stray_shadow("core_customerrelationship__old")
    _stray_shadow("core_appuser__load")
    generate(100)
    assert stray_tables() == []


def test_migrate_leaves_a_running_loads_shadow_tables_alone(reports_dir, capsys):
    _stray_shadow()
    with separate_connection() as load:
        load.execute("SELECT pg_advisory_lock(%s)", [DATASET_LOCK_KEY])
        call_command("migrate", verbosity=1)
    assert stray_tables() == ["core_address__load"]
    assert "A generate_data is loading data" in capsys.readouterr().out
    call_command("migrate", verbosity=0)
    assert stray_tables() == []


@pytest.mark.django_db
def test_a_load_in_the_callers_transaction_leaves_its_settings_as_they_were():
    names = ["enable_hashjoin", "synchronous_commit", "jit", "application_name", "TimeZone"]

    def settings() -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT " + ", ".join(["current_setting(%s)"] * len(names)), names)
            return list(cursor.fetchone())

    before = settings()
    customer_dataset_replace(n=50, chunk=50, as_of=AS_OF)
    assert settings() == before


def test_builds_that_cannot_connect_fail_cleanly(reports_dir, monkeypatch):
    """A server out of connections (say) ends the load with a message, the
    previous data and no shadow table."""
    generate(200)
    before = table_digest()

    def refused():
        raise psycopg.OperationalError("sorry, too many clients already")

    monkeypatch.setattr(loader, "separate_connection", refused)
    with pytest.raises(CommandError, match="cannot open a connection for the builds"):
        generate(400)
    assert table_digest() == before
    assert stray_tables() == []


@pytest.mark.django_db
def test_wal_compression_only_where_the_server_has_lz4_and_the_role_may_set_it():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'wal_compression'"
        )
        server_has_lz4 = bool(cursor.fetchone()[0])
        # The tests run as superuser.
        assert sessions.may_compress_wal_with_lz4(cursor) is server_has_lz4
        cursor.execute("CREATE ROLE crm_test_nobody")
        cursor.execute("SET LOCAL ROLE crm_test_nobody")
        assert sessions.may_compress_wal_with_lz4(cursor) is False
    assert sessions.load_settings("1GB", 150000, lz4_wal=True)["wal_compression"] == "lz4"
    assert "wal_compression" not in sessions.load_settings("1GB", 150000, lz4_wal=False)


def test_only_the_customer_tables_are_replaced_and_no_other_model_points_at_them():
    """The loader rebuilds the tables of REPLACED_MODELS (the three of record
    and the list's read table) and refuses to run while another table
    references them (a rebuild would break that key): a new model (API
    tokens, say) must keep its keys off the customers'."""
    replaced = set(cleanup.REPLACED_MODELS)
    assert replaced == {AppUser, Address, CustomerRelationship, CustomerRow}
    pointing = [
        f"{model._meta.label}.{field.name}"
        for model in apps.get_models()
        if model not in replaced
        for field in model._meta.get_fields()
        if field.is_relation and field.concrete and field.related_model in replaced
    ]
    assert pointing == []
