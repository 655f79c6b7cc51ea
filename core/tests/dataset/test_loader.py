"""Replacing the dataset: counts, links, atomicity, one run at a time, fresh ids."""

from __future__ import annotations

import psycopg
import pytest
from django.core.management import CommandError
from django.db import connection
from django.db.models import F

from core.dataset.generation import CustomerDataset
from core.dataset.loader import DATASET_LOCK_KEY, customer_dataset_replace
from core.models import Address, AppUser, CustomerRelationship

from .snapshots import schema_snapshot, stray_tables, table_digest
from .test_generation import generate

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
