"""A test that needs a system program: skipped on a laptop without it, failed in CI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from crm.tests.processes import REPO, nested_pytest

TEST = """
from crm.tests.processes import needs_programs

@needs_programs("crm-no-such-program")
def test_drives_the_program():
    pass
"""


def run_pytest(tmp_path, ci: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_needs.py").write_text(TEST)
    # The root conftest (which applies the rule) loaded as a plugin, for a test
    # file outside the repository. Its temporary folders go in this test's
    # (crm.tests.processes.nested_pytest).
    return subprocess.run(
        [sys.executable, "-m", "pytest", *nested_pytest(tmp_path), "-q", "-rs", str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "CI": ci},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("ci", ["true", "1"])
def test_a_missing_program_fails_the_test_in_ci(tmp_path, ci):
    result = run_pytest(tmp_path, ci)
    assert result.returncode == 1, result.stdout
    assert "crm-no-such-program not installed, and CI=true" in result.stdout


def test_a_missing_program_skips_the_test_outside_ci(tmp_path):
    result = run_pytest(tmp_path, "")
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "crm-no-such-program not installed (apt-get install them" in result.stdout
