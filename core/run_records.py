"""Records of runs (generate_data here, the benchmarks in ``bench``): CSV rows
with the facts that make two runs comparable, the commit and the server."""

from __future__ import annotations

import csv
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from django.conf import settings
from django.db import connection


def reports_dir() -> Path:
    """Where a run's records go (``CRM_REPORTS_DIR``), created on first use."""
    path = Path(settings.CRM_REPORTS_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def git_commit() -> str:
    """The checkout's commit (with ``-dirty`` when it has uncommitted changes)."""
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def postgres_version() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return cursor.fetchone()[0]


def append_csv(path: Path, columns: Sequence[str], row: Mapping[str, object]) -> None:
    """Append ``row``; write the header first when the file is new."""
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="raise")
        if new:
            writer.writeheader()
        writer.writerow(row)
