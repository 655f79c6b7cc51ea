"""What an authenticated user may do with customers."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create
from core.tests.clients import api_client

URL = "/api/users/"


@pytest.fixture
def customers(db):

    customer_dataset_replace(n=120, chunk=60, seed=3)


@pytest.mark.django_db
def test_reading_customers_needs_the_view_permission(customers):
    nobody = get_user_model().objects.create_user("nobody")
    token = api_user_create(username="nobody", read_only=True)
    nobody.user_permissions.clear()
    assert Client(headers={"authorization": f"Token {token}"}).get(URL).status_code == 403
    assert api_client("reader").get(URL).status_code == 200
