"""The schema: constraints, deletion rules and the indexes the API relies on."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError

from core.models import Address, AppUser, CustomerRelationship, CustomerRow

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
        for model in (Address, AppUser, CustomerRelationship, CustomerRow)
        for index in model._meta.indexes
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
        existing = {row[0] for row in cursor.fetchall()}
    assert declared <= existing


@pytest.mark.parametrize(
    ("model", "lookup", "index"),
    [
        (CustomerRow, {"phone_number__icontains": "234"}, "customer_list_phone_trgm"),
    ],
)
def test_icontains_can_use_the_trigram_index(model, lookup, index):
    """Django compiles icontains to UPPER(col::text) LIKE UPPER(%s): the index must match it.

    Each lookup is asked of the table that holds the index: whether a join
    starts from the customers or from the addresses is the planner's choice
    by the tables' sizes, not a question of whether the index matches.
    """
    make_customer()
    query = model.objects.filter(**lookup)
    with connection.cursor() as cursor:
        # On a tiny table the planner rightly prefers a sequential scan;
        # forbid it to see whether the index is usable at all.
        cursor.execute("SET LOCAL enable_seqscan = off")
        # Nor let it weigh the index against a table it knows to hold one
        # row: once autovacuum has analyzed the tiny tables earlier tests
        # wrote to, walking another whole index (the primary key) to filter
        # that row is cheaper than any GIN scan. Give it the rows where the
        # choice is real.
        cursor.execute(
            "INSERT INTO core_address (street, street_number, city_code, city, country) "
            "SELECT 'Street', i::text, i::text, 'City ' || i, 'Country ' || i "
            "FROM generate_series(1, 5000) AS i"
        )
        cursor.execute(
            "INSERT INTO core_appuser (first_name, last_name, gender, customer_id, "
            "phone_number, address_id, created, last_updated) "
            "SELECT 'First ' || i, 'Last ' || i, 'o', 'T-' || i, i::text, "
            "(SELECT min(id) FROM core_address), now(), now() "
            "FROM generate_series(1, 5000) AS i"
        )
        cursor.execute("ANALYZE core_address, core_appuser, core_customer_list")
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


def _new_record_via_model() -> CustomerRelationship:
    return CustomerRelationship.objects.get(pk=make_customer().pk)


def _new_record_via_bulk_create() -> CustomerRelationship:
    user = make_customer()
    CustomerRelationship.objects.filter(pk=user.pk).delete()
    CustomerRelationship.objects.bulk_create([CustomerRelationship(appuser=user, points=1)])
    return CustomerRelationship.objects.get(pk=user.pk)


def _new_record_via_service() -> CustomerRelationship:
    from core.customers.services import customer_create

    customer = customer_create(
        address={
            "street": "Gasse",
            "street_number": "2",
            "city_code": "8010",
            "city": "Graz",
            "country": "Austria",
        },
        first_name="Eva",
        last_name="Berger",
        gender="f",
        customer_id="SVC-1",
        phone_number="+43 316 123456",
    )
    return CustomerRelationship.objects.get(pk=customer.pk)


def _new_record_via_api() -> CustomerRelationship:
    from core.tests.clients import api_client

    response = api_client("editor", read_only=False).post(
        "/api/users/",
        {
            "first_name": "Eva",
            "last_name": "Berger",
            "gender": "f",
            "customer_id": "API-1",
            "phone_number": "+43 316 123456",
            "address": {
                "street": "Gasse",
                "street_number": "2",
                "city_code": "8010",
                "city": "Graz",
                "country": "Austria",
            },
            "relationship": {"points": 3},
        },
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return CustomerRelationship.objects.get(pk=response.json()["id"])


def _new_record_via_admin() -> CustomerRelationship:
    """The admin's add form, submitted with the last activity it showed (its
    initial value, the time the page was rendered)."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from core.tests.admin_forms import customer_form

    client = Client()
    client.force_login(get_user_model().objects.create_superuser("boss", "b@example.com", "pw"))
    shown = timezone.localtime(timezone.now() - dt.timedelta(seconds=5))
    page = customer_form(client)
    page.update(
        {
            "first_name": "Eva",
            "last_name": "Berger",
            "gender": "f",
            "customer_id": "ADM-1",
            "phone_number": "+43 316 123456",
            "address__street": "Gasse",
            "address__street_number": "2",
            "address__city_code": "8010",
            "address__city": "Graz",
            "address__country": "Austria",
            "relationship__points": "0",
            "relationship__last_activity_0": shown.date().isoformat(),
            "relationship__last_activity_1": shown.time().isoformat(),
        }
    )
    response = client.post("/admin/core/appuser/add/", page)
    assert response.status_code == 302, response.content[:3000]
    return CustomerRelationship.objects.get(appuser__customer_id="ADM-1")


@pytest.mark.parametrize(
    "create",
    [
        _new_record_via_model,
        _new_record_via_bulk_create,
        _new_record_via_service,
        _new_record_via_api,
        _new_record_via_admin,
    ],
    ids=["model", "bulk_create", "service", "api", "admin"],
)
def test_a_new_loyalty_record_was_last_active_when_it_was_created(create):
    """The README's rule, last_activity >= created, holds from the first save:
    the default "now" is taken before auto_now_add's, and must not show."""
    record = create()
    assert record.last_activity == record.created


def test_a_last_activity_before_the_record_was_created_becomes_its_creation():
    record = _new_record_via_model()
    record.last_activity = record.created - dt.timedelta(seconds=30)
    record.save()
    record.refresh_from_db()
    assert record.last_activity == record.created
    later = record.created + dt.timedelta(days=3)
    record.last_activity = later
    record.save()
    record.refresh_from_db()
    assert record.last_activity == later
