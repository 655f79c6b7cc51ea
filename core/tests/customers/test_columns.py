"""The row shape: the list's fast rows are exactly what the serializers document."""

from __future__ import annotations

import datetime as dt

import pytest

from core.api.serializers import CustomerSerializer
from core.models import AppUser
from core.tests.clients import api_client

pytestmark = pytest.mark.django_db


URL = "/api/users/"


def test_rows_have_the_documented_shape_and_values(dataset):
    rows = api_client().get(f"{URL}?page_size=20").json()["results"]
    for row in rows:
        expected = CustomerSerializer(AppUser.objects.get(pk=row["id"])).data
        assert row.keys() == expected.keys()
        for key in ("address", "relationship"):
            assert row[key].keys() == expected[key].keys()

        def instants(data):
            return {
                k: (
                    dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
                    if k in ("created", "last_updated", "last_activity") and v
                    else v
                )
                for k, v in data.items()
            }

        assert instants(row | {"address": None, "relationship": None}) == instants(
            dict(expected) | {"address": None, "relationship": None}
        )
        assert row["address"] == dict(expected["address"])
        assert instants(row["relationship"]) == instants(dict(expected["relationship"]))
