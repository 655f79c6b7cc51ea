"""Ordinary commands never rewrite committed files: a fresh clone stays clean.

The commands run in a fresh repository made from this checkout's files (what a
clone of them would hold), as a user runs them: with no ``CRM_REPORTS_DIR``,
so that every default output folder is exercised.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def fresh_clone(destination: Path) -> Path:
    """This checkout's files (committed or not, ignored ones left out) as a new repository."""
    source = Path(settings.BASE_DIR)
    files = git(source, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, files.split("\0")):
        path = source / name
        if path.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination / name)
    git(destination, "init", "-q")
    git(destination, "add", "-A")
    git(destination, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "clone")
    return destination


@pytest.mark.django_db(transaction=True)
def test_quickstart_and_generate_data_leave_a_fresh_clone_clean(tmp_path):
    clone = fresh_clone(tmp_path / "clone")
    env = {**os.environ, **connection.child_environment()}
    env.pop("CRM_REPORTS_DIR", None)  # the defaults are what is tested
    for command in (
        ["quickstart", "--no-serve", "--n", "200"],
        ["generate_data", "--n", "200", "--chunk", "100", "--quiet"],
    ):
        done = subprocess.run(
            [sys.executable, str(clone / "manage.py"), *command],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    assert (clone / "reports" / "generate_benchmarks.csv").exists(), "the runs were recorded"
    assert git(clone, "status", "--porcelain") == ""
