from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="session")
def child_reports_dir(tmp_path_factory) -> Iterator[Path]:
    """Child processes (manage.py, gunicorn) write their reports into a
    temporary folder, never into the checkout's reports/."""
    path = tmp_path_factory.mktemp("child-reports")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CRM_REPORTS_DIR", str(path))
        yield path


@pytest.fixture
def reports_dir(settings, tmp_path) -> Path:
    """Send reports to a temporary folder instead of the checkout's reports/."""
    settings.CRM_REPORTS_DIR = tmp_path / "reports"
    return settings.CRM_REPORTS_DIR


def database_url(dbname: str) -> str:
    """A DATABASE_URL for ``dbname`` on the server the tests run against."""
    params = connection.get_connection_params()
    host = quote(str(params.get("host") or "localhost"), safe="")
    user = params.get("user") or "postgres"
    return f"postgresql://{user}@{host}:{params.get('port') or 5432}/{dbname}"


def manage(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    """Run ``python manage.py ...`` in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def api_client(username: str = "reader", read_only: bool = True):
    """A test client that sends an API token of a user with customer permissions."""
    from django.test import Client

    from core.services import api_user_create

    token = api_user_create(username=username, read_only=read_only)
    return Client(headers={"authorization": f"Token {token}"})


@pytest.fixture
def reader(db):
    return api_client()
