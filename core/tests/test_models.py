"""The schema: constraints, deletion rules and the indexes the API relies on."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError

from core.models import Address, AppUser, CustomerRelationship

pytestmark = pytest.mark.django_db


def make_customer(customer_id: str = "CU1", **fields) -> AppUser:
    address = Address.objects.create(
        street="Ringstraße", street_number="1", city_code="1010", city="Vienna", country="Austria"
    )
    user = AppUser.objects.create(
        first_name=fields.pop("first_name", "Anna"),
        last_name=fields.pop("last_name", "Huber"),
        gender="f",
        customer_id=customer_id,
        phone_number="+43 1 234 5678",
        birthday=dt.date(1980, 5, 17),
        address=address,
        **fields,
    )
    CustomerRelationship.objects.create(appuser=user, points=10)
    return user


def test_customer_id_is_unique():
    make_customer("CU1")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_customer("CU1")


def test_an_address_in_use_cannot_be_deleted():
    user = make_customer()
    with pytest.raises(ProtectedError):
        user.address.delete()


def test_deleting_a_customer_deletes_their_loyalty_record():
    user = make_customer()
    user.delete()
    assert not CustomerRelationship.objects.exists()


def test_gender_accepts_only_m_f_o():
    user = make_customer()
    user.gender = "x"
    with pytest.raises(ValidationError, match="gender"):
        user.full_clean()


def test_timestamps_are_maintained():
    user = make_customer()
    created, updated = user.created, user.last_updated
    user.first_name = "Anne"
    user.save()
    user.refresh_from_db()
    assert user.created == created
    assert user.last_updated > updated


def test_loyalty_record_is_keyed_by_the_customer():
    user = make_customer()
    assert CustomerRelationship.objects.get(pk=user.pk).appuser == user


def test_pg_trgm_is_installed_by_a_migration():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        assert cursor.fetchone() == (1,)


def test_every_declared_index_exists_under_its_name():
    declared = {
        index.name
        for model in (Address, AppUser, CustomerRelationship)
        for index in model._meta.indexes
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
        existing = {row[0] for row in cursor.fetchall()}
    assert declared <= existing


@pytest.mark.parametrize(
    ("lookup", "index"),
    [
        ({"last_name__icontains": "smi"}, "appuser_last_name_trgm"),
        ({"first_name__icontains": "ann"}, "appuser_first_name_trgm"),
        ({"phone_number__icontains": "234"}, "appuser_phone_number_trgm"),
    ],
)
def test_icontains_can_use_the_trigram_index(lookup, index):
    """Django compiles icontains to UPPER(col::text) LIKE UPPER(%s): the index must match it."""
    make_customer()
    query = AppUser.objects.filter(**lookup)
    with connection.cursor() as cursor:
        # On a tiny table the planner rightly prefers a sequential scan;
        # forbid it to see whether the index is usable at all.
        cursor.execute("SET LOCAL enable_seqscan = off")
        # Earlier tests' rolled-back inserts leave entries in the GIN index's
        # pending list (fastupdate), which the planner charges to a GIN scan
        # until autovacuum flushes it: flush it, so the plan depends on the
        # index alone.
        cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [index])
        sql, params = query.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert index in plan, plan


def test_the_loyalty_record_is_keyed_by_the_customer_id():
    """Distributed by the customer id, the record co-locates with its customer."""
    pk = CustomerRelationship._meta.pk
    assert pk.name == "appuser"
    assert pk.related_model is AppUser
