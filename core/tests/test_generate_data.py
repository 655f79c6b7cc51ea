"""generate_data: counts, links, determinism, realism, atomicity and bad input."""

from __future__ import annotations

import csv
import datetime as dt
import statistics
from collections import Counter

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import F

from core.generation import CustomerDataset
from core.management.commands.generate_data import REPORT_COLUMNS
from core.models import Address, AppUser, CustomerRelationship
from core.services import DATASET_LOCK_KEY

pytestmark = pytest.mark.django_db(transaction=True)

AS_OF = dt.date(2026, 1, 15)


def generate(n: int, chunk: int = 1000, seed: int = 42, **options) -> None:
    call_command("generate_data", n=n, chunk=chunk, seed=seed, as_of=AS_OF, quiet=True, **options)


def table_digest() -> dict[str, str]:
    """An md5 over every row of every table, in id order."""
    digests = {}
    with connection.cursor() as cursor:
        for model in (Address, AppUser, CustomerRelationship):
            table = model._meta.db_table
            cursor.execute(
                f"SELECT count(*), md5(string_agg(t::text, E'\\n' "
                f"ORDER BY t.{model._meta.pk.column})) FROM {table} t"
            )
            digests[table] = cursor.fetchone()
    return digests


def schema_snapshot() -> list[tuple]:
    """Every index and constraint of the three tables, by name and definition."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes "
            "WHERE tablename LIKE 'core_%%' ORDER BY 1, 2"
        )
        indexes = cursor.fetchall()
        cursor.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE conrelid::regclass::text LIKE 'core_%%' ORDER BY 1, 2"
        )
        return indexes + cursor.fetchall()


def stray_tables() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE '%%__load%%'")
        return [row[0] for row in cursor.fetchall()]


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


def test_same_seed_gives_identical_rows_whatever_the_chunk(reports_dir):
    generate(2500, chunk=2500)
    whole = table_digest()
    generate(2500, chunk=333)
    assert table_digest() == whole
    generate(2500, chunk=333, seed=43)
    assert table_digest() != whole


def test_data_is_realistic_and_skewed(reports_dir):
    generate(20_000, chunk=5000)
    surnames = Counter(AppUser.objects.values_list("last_name", flat=True))
    assert "Smith" in [name for name, _ in surnames.most_common(3)]
    assert len(surnames) > 2000, "most names are rare"
    vienna = Address.objects.filter(city="Vienna")
    assert 200 < vienna.count() < 800  # about 2% of customers
    assert set(vienna.values_list("country", flat=True)) == {"Austria"}
    assert all(
        code in {f"1{d:02d}0" for d in range(1, 24)}
        for code in vienna.values_list("city_code", flat=True)
    )
    assert (
        AppUser.objects.filter(address__city="Vienna")
        .exclude(phone_number__startswith="+43 1 ")
        .count()
        == 0
    )
    assert set(AppUser.objects.values_list("gender", flat=True)) == {"m", "f", "o"}
    users = list(AppUser.objects.values("birthday", "created", "last_updated", "customer_id"))
    assert all(dt.date(1940, 1, 1) <= u["birthday"] <= dt.date(2007, 12, 31) for u in users)
    as_of = dt.datetime.combine(AS_OF, dt.time(), tzinfo=dt.UTC)
    assert all(as_of - dt.timedelta(days=3651) <= u["created"] <= as_of for u in users)
    assert all(u["last_updated"] >= u["created"] for u in users)
    assert len({u["customer_id"] for u in users}) == len(users)
    records = list(CustomerRelationship.objects.values("points", "created", "last_activity"))
    assert all(r["last_activity"] >= r["created"] for r in records)
    points = [r["points"] for r in records]
    assert min(points) >= 0
    assert statistics.median(points) < statistics.mean(points), "many small, few large"
    assert max(points) > 20 * statistics.median(points)


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


@pytest.mark.parametrize(
    "args",
    [
        ["--n", "0"],
        ["--n", "-5"],
        ["--n", "many"],
        ["--n", "2.5"],
        ["--n", "10", "--chunk", "0"],
        ["--n", "10", "--chunk", "-1"],
    ],
)
def test_bad_arguments_are_refused_and_leave_data_untouched(reports_dir, args):
    generate(50)
    before = table_digest()
    with pytest.raises(CommandError, match=r"--n|--chunk"):
        call_command("generate_data", *args)
    assert table_digest() == before


def test_a_database_that_is_not_postgresql_is_refused(reports_dir, monkeypatch):
    monkeypatch.setattr(connection, "vendor", "sqlite")
    with pytest.raises(CommandError, match="needs PostgreSQL"):
        generate(10)


def test_appends_a_report_row_with_phase_timings(reports_dir):
    generate(300)
    generate(200)
    with (reports_dir / "generate_benchmarks.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert tuple(rows[0]) == REPORT_COLUMNS
    assert rows[1]["n"] == "200"
    assert float(rows[1]["total_s"]) > 0
    assert rows[1]["postgres_version"][:2] in {"15", "16", "17", "18"}


def test_progress_is_plain_lines_off_a_terminal_and_silent_when_quiet(reports_dir, capsys):
    call_command("generate_data", n=100, chunk=50, as_of=AS_OF)
    out = capsys.readouterr()
    assert "copy: 300/300 rows" in out.err
    assert "index:" in out.err
    assert "analyze:" in out.err
    assert "Loaded 100 customers" in out.out
    generate(100)
    out = capsys.readouterr()
    assert out.out == out.err == ""
