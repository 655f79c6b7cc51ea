"""The browsable API: a title that says what it lists, and a filter form."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(db) -> Client:
    customer_dataset_replace(n=120, chunk=120, seed=2)
    get_user_model().objects.create_user("clerk", password="s3cret-pass-1")
    api_user_create(username="clerk", read_only=True)
    client = Client()
    client.login(username="clerk", password="s3cret-pass-1")
    return client


def page(client: Client, url: str) -> str:
    response = client.get(url, HTTP_ACCEPT="text/html")
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def test_the_list_is_titled_customers(browser):
    html = page(browser, "/api/users/")
    assert "<h1>Customers</h1>" in html
    assert "Customer List Api" not in html


def test_the_list_has_a_filter_form_that_keeps_the_query(browser):
    html = page(browser, "/api/users/?city=vienna&ordering=-relationship__points")
    assert 'data-target="#filtersModal"' in html, "DRF's Filters button"
    for name in ("last_name", "city", "created_from", "points_min", "search", "ordering"):
        assert f'name="{name}"' in html, name
    assert 'value="vienna"' in html
    assert 'value="-relationship__points"' in html


def test_a_rejected_value_shows_its_error_in_the_form(browser):
    response = browser.get("/api/users/?points_min=abc", HTTP_ACCEPT="text/html")
    assert response.status_code == 400
    assert "Enter a whole number" in response.content.decode()
