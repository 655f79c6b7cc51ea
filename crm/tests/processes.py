"""Running this project as a user would, in child processes, against the tests' database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

REPO = Path(__file__).resolve().parents[2]


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


def needs_programs(*names: str) -> pytest.MarkDecorator:
    """Skip, saying which are missing, unless the programs are installed (CI installs
    them: ``.ci/run``; on a laptop, ``apt-get install`` them)."""
    missing = [
        name
        for name in names
        if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()
    ]
    return pytest.mark.skipif(
        bool(missing), reason=f"{', '.join(missing)} not installed (apt-get install them)"
    )
