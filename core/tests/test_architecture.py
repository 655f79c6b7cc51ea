"""The never-arrows of docs/architecture.md hold (import-linter's contracts in pyproject.toml)."""

from __future__ import annotations

import os

from importlinter.cli import lint_imports

from crm.tests.processes import REPO


def test_no_package_imports_what_the_architecture_forbids(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    monkeypatch.setitem(os.environ, "PYTHONPATH", str(REPO))
    exit_code = lint_imports(no_cache=True)
    output = capsys.readouterr().out
    assert exit_code == 0, output
    assert "0 broken" in output
