"""The page's JSON built by PostgreSQL is byte for byte the API's, so that
bench_profile --json compares like with like."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from bench.json_paths import database_json, page_of, python_json
from core.customers.services import customer_create
from core.models import CustomerRelationship

pytestmark = pytest.mark.django_db(transaction=True)


def test_both_paths_give_the_same_bytes():
    call_command("generate_data", n=300, chunk=300, quiet=True)
    # What JSON must get right: no loyalty record, no birthday, quotes,
    # backslashes, control characters and names beyond ASCII.
    awkward = customer_create(
        address={
            "street": "Ringstraße",
            "street_number": "1",
            "city_code": "1010",
            "city": 'Wien\t"Mitte"',
            "country": "Österreich",
        },
        first_name="Zoë \\ \U0001d518",
        last_name='O"Brien',
        gender="o",
        customer_id="EDGE-JSON",
        phone_number="+43 1 555 0000",
        birthday=None,
    )
    CustomerRelationship.objects.filter(appuser=awkward).delete()
    for url in (
        "/api/users/?ordering=-id",
        "/api/users/?ordering=-relationship__points",
        "/api/users/?ordering=birthday",
        "/api/users/?last_name=nobody-at-all",
    ):
        sql, params = page_of(url, size=500)
        built = python_json(sql, params)
        assert built == database_json(sql, params), url
    first = python_json(*page_of("/api/users/?ordering=-id", size=1))
    assert b'"relationship":null' in first
    assert b'"birthday":null' in first
