"""Server-Timing: where a response's time went, database or application."""

from __future__ import annotations

import re
import secrets

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from core.dataset.loader import customer_dataset_replace
from core.tests.clients import api_client
from crm.tests.processes import manage

TIMING = re.compile(
    r'db;dur=(?P<db>[\d.]+);desc="(?P<queries>\d+) queries", app;dur=(?P<app>[\d.]+)'
)


@pytest.fixture
def customers(db):
    customer_dataset_replace(n=30, chunk=30, seed=2)


def test_responses_say_how_long_the_database_and_the_application_took(customers):
    client = api_client()
    client.get("/api/users/")
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/api/users/?page_size=5")
    timing = TIMING.fullmatch(response["Server-Timing"])
    assert timing, response["Server-Timing"]
    assert int(timing["queries"]) == len(captured)
    database = sum(float(q["time"]) for q in captured) * 1000
    # Django's own clock rounds each query to the millisecond: a page of
    # 0.45 ms shows there as 1.0.
    assert float(timing["db"]) >= database * 0.5 - 0.5 * len(captured)
    assert float(timing["db"]) > 0
    assert float(timing["app"]) > 0


def test_errors_and_other_pages_are_timed_too(customers):
    assert TIMING.fullmatch(api_client().get("/api/users/?nonsense=1")["Server-Timing"])


def test_no_header_when_switched_off(customers):
    with override_settings(CRM_SERVER_TIMING=False):
        response = api_client().get("/api/users/")
    assert response.status_code == 200
    assert "Server-Timing" not in response


@pytest.mark.parametrize(("value", "expected"), [("", "False"), ("1", "True")])
def test_production_sends_it_only_when_asked(value, expected):
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.CRM_SERVER_TIMING)",
        env={
            "CRM_ENV": "production",
            "DJANGO_ALLOWED_HOSTS": "crm.example.com",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
            "CRM_SERVER_TIMING": value,
        },
    )
    assert result.stdout.strip().splitlines()[-1] == expected, result.stderr
