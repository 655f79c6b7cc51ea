"""Data the customer tests share: a small generated dataset plus awkward rows."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from core.customers.services import customer_create
from core.dataset.loader import customer_dataset_replace
from core.models import Address, AppUser, CustomerRelationship
from crm.tests.module_data import module_data

AS_OF = dt.date(2026, 1, 15)


@pytest.fixture
def dataset(db) -> list[dict[str, Any]]:
    """150 generated customers plus the awkward ones, as the model sees them."""
    return dataset_load()


#: The dataset committed once for a module whose every test reads it
#: (crm.tests.module_data): such a module names ``module_dataset`` its dataset.
committed_dataset = module_data(lambda: dataset_load())


@pytest.fixture
def module_dataset(committed_dataset, db) -> list[dict[str, Any]]:
    """The module's committed dataset, as :func:`dataset` gives it (a copy per test)."""
    return copy.deepcopy(committed_dataset)


def dataset_load() -> list[dict[str, Any]]:
    """Load the dataset of :func:`dataset`, and return its rows as the model sees them."""
    customer_dataset_replace(n=150, chunk=64, seed=7, as_of=AS_OF)
    awkward = [
        ("100%", "Under_score", None),
        ("Anne", "O'Brien", dt.date(1990, 1, 1)),
        ("Jürgen", "Müller", dt.date(1990, 1, 1)),
        ("Zoë", "Smith", None),
        ("Ana", "Smithson", dt.date(1955, 6, 30)),
    ]
    for i, (first, last, birthday) in enumerate(awkward):
        customer_create(
            address={
                "street": "Ringstraße",
                "street_number": "1",
                "city_code": "1010",
                "city": "Vienna",
                "country": "Austria",
            },
            relationship={"points": 100},
            first_name=first,
            last_name=last,
            gender="o",
            customer_id=f"EDGE-{i}",
            phone_number="+43 1 555 0000",
            birthday=birthday,
        )
    # Ties: many customers share a points value and a city.
    CustomerRelationship.objects.filter(appuser_id__lte=40).update(points=100)
    # One customer without a loyalty record: listed by default, absent from
    # orderings by the record's columns.
    address = Address.objects.create(
        street="Gasse", street_number="2", city_code="8010", city="Graz", country="Austria"
    )
    AppUser.objects.create(
        first_name="Solo",
        last_name="Norecord",
        gender="m",
        customer_id="SOLO",
        phone_number="+43 316 123456",
        address=address,
    )
    return model_rows()


def model_rows() -> list[dict[str, Any]]:
    rows = []
    for user in AppUser.objects.select_related("address").all():
        record = CustomerRelationship.objects.filter(pk=user.pk).first()
        rows.append(
            {
                "id": user.id,
                "first_name": user.first_name,
                "last_name": user.last_name,
                "gender": user.gender,
                "customer_id": user.customer_id,
                "email": user.email,
                "phone_number": user.phone_number,
                "birthday": user.birthday,
                "created": user.created,
                "last_updated": user.last_updated,
                "address_id": user.address_id,
                "city": user.address.city,
                "country": user.address.country,
                "city_code": user.address.city_code,
                "points": record.points if record else None,
                "last_activity": record.last_activity if record else None,
            }
        )
    return rows


PEOPLE = [
    ("John", "Smith", "Boston"),
    ("Jon", "Smithers", "Chicago"),
    ("Joan", "Smith", "Vienna"),
    ("Johanna", "Schmidt", "Berlin"),
    ("Mary", "Smyth", "London"),
    ("Peter", "Parker", "New York"),
]


@pytest.fixture
def people(db):
    for i, (first, last, city) in enumerate(PEOPLE):
        customer_create(
            address={
                "street": 'Main "Street", corner\nBlock B',
                "street_number": str(i),
                "city_code": "100",
                "city": city,
                "country": "Somewhere",
            },
            relationship={"points": 10 * i},
            first_name=first,
            last_name=last,
            gender="o",
            customer_id=f"CU-{i:04d}",
            phone_number=f"+1 555 01{i:02d}",
        )
    return PEOPLE


@pytest.fixture
def namesakes(people):
    """The issue's case: at 100,000 rows four "Joe Smith" came before the first
    "John Smith", and the admin's substring search found Jonathan Smiths."""
    for i, (first, last) in enumerate(
        [("Joe", "Smith")] * 4 + [("Jonathan", "Smith")] * 4 + [("Jon", "Smith")]
    ):
        customer_create(
            address={
                "street": "Main Street",
                "street_number": "1",
                "city_code": "100",
                "city": "Springfield",
                "country": "Somewhere",
            },
            relationship={"points": 1},
            first_name=first,
            last_name=last,
            gender="m",
            customer_id=f"NS-{i}",
            phone_number="+1 555 0199",
        )
