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


ROUTES = (
    "from django.conf import settings; from django.urls import resolve, Resolver404\n"
    "try:\n    resolve('/api/baseline/users/'); print('baseline: on')\n"
    "except Resolver404:\n    print('baseline: off')\n"
    "print('bench installed:', 'bench' in settings.INSTALLED_APPS)\n"
)


def test_the_baseline_route_and_the_benchmarks_are_off_in_production():
    """The original's list view (exact COUNT(*), unchecked orderings) is for
    bench_list on developer machines only."""
    production = manage("shell", "-c", ROUTES, env=PRODUCTION)
    assert production.returncode == 0, production.stderr
    assert "baseline: off" in production.stdout
    assert "bench installed: False" in production.stdout
    development = manage("shell", "-c", ROUTES, env={"CRM_ENV": "development"})
    assert "baseline: on" in development.stdout, "the check can tell the difference"
    refused = manage("check", env={**PRODUCTION, "CRM_BENCHMARKS": "1"})
    assert refused.returncode == 1
    assert "CRM_BENCHMARKS=1 is for developer machines" in refused.stderr
