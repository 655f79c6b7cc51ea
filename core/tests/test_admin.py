"""The admin at millions of rows: bounded queries, search, the change form."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from core.dataset.loader import customer_dataset_replace
from core.models import AppUser

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(db):
    customer_dataset_replace(n=300, chunk=300, seed=5)
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-Secret-123")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "path",
    [
        "/admin/core/appuser/",
        "/admin/core/appuser/?q=smith",
        "/admin/core/appuser/?gender__exact=f",
        "/admin/core/appuser/?country=Austria",
        "/admin/core/appuser/?o=-7",
        "/admin/core/address/",
        "/admin/core/address/?q=vienna",
        "/admin/core/customerrelationship/",
    ],
)
def test_admin_changelists_answer_with_a_bounded_number_of_queries(
    admin_client, path, django_assert_max_num_queries
):
    with django_assert_max_num_queries(12):
        response = admin_client.get(path)
    assert response.status_code == 200


def test_admin_search_finds_by_name(admin_client):
    response = admin_client.get("/admin/core/appuser/?q=smith")
    assert b"Smith" in response.content


def test_admin_change_form_saves_the_inline_record(admin_client):
    user = AppUser.objects.first()
    url = f"/admin/core/appuser/{user.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b'name="address"' in page.content, "the address is a raw id, not a 3M-row select"
    data = {
        "first_name": "Changed",
        "last_name": user.last_name,
        "gender": user.gender,
        "customer_id": user.customer_id,
        "phone_number": user.phone_number,
        "birthday": user.birthday.isoformat() if user.birthday else "",
        "address": user.address_id,
        "relationship-TOTAL_FORMS": "1",
        "relationship-INITIAL_FORMS": "1",
        "relationship-MIN_NUM_FORMS": "1",
        "relationship-MAX_NUM_FORMS": "1",
        "relationship-0-appuser": user.pk,
        "relationship-0-points": "777",
        "relationship-0-last_activity_0": "2025-01-02",
        "relationship-0-last_activity_1": "10:00:00",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content[:2000]
    user.refresh_from_db()
    assert user.first_name == "Changed"
    assert user.relationship.points == 777
