"""Production mode: check --deploy is clean, and it refuses to start without its secrets."""

from __future__ import annotations

import secrets

import pytest

from crm.tests.processes import manage

PRODUCTION = {
    "CRM_ENV": "production",
    "DJANGO_ALLOWED_HOSTS": "crm.example.com",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
}


def test_check_deploy_is_clean_in_production_mode():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("DJANGO_SECRET_KEY", "DJANGO_SECRET_KEY must be set"),
        ("DJANGO_ALLOWED_HOSTS", "DJANGO_ALLOWED_HOSTS must list"),
    ],
)
def test_production_refuses_to_start_without(missing, message):
    result = manage("check", env={**PRODUCTION, missing: ""})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert message in result.stderr
