"""The metrics folder gunicorn's hooks prepare, and the mistake they refuse."""

from __future__ import annotations

import sys
import types

import pytest

from crm.observability import multiprocess


@pytest.fixture
def environment(monkeypatch):
    # Set, then deleted: the variable is restored (absent) after the test,
    # whatever prepare_directory() sets.
    monkeypatch.setenv(multiprocess.VARIABLE, "")
    monkeypatch.delenv(multiprocess.VARIABLE)
    monkeypatch.setattr(multiprocess, "_made", None)
    # As in gunicorn's master: prometheus-client not imported yet.
    monkeypatch.delitem(sys.modules, "prometheus_client.values", raising=False)
    return monkeypatch


def test_without_a_folder_a_temporary_one_is_made_and_removed(environment):
    import os

    directory = multiprocess.prepare_directory()
    assert directory.is_dir()
    assert os.environ[multiprocess.VARIABLE] == str(directory)
    multiprocess.remove_directory()
    assert not directory.exists()


def test_a_given_folder_is_emptied_of_an_earlier_runs_files_and_kept(environment, tmp_path):
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_12.db").write_bytes(b"old")
    (given / "README").write_text("the operator's")
    environment.setenv(multiprocess.VARIABLE, str(given))
    assert multiprocess.prepare_directory() == given
    assert sorted(p.name for p in given.iterdir()) == ["README"]
    multiprocess.remove_directory()
    assert given.exists()


def test_a_missing_given_folder_is_created(environment, tmp_path):
    environment.setenv(multiprocess.VARIABLE, str(tmp_path / "a" / "b"))
    assert multiprocess.prepare_directory().is_dir()


def test_prometheus_client_imported_too_early_is_refused(environment):
    """gunicorn's preload_app would import the application (and prometheus-client,
    in single-process mode) before on_starting: say so instead of serving
    per-worker numbers as if they were totals."""

    class MutexValue:
        _multiprocess = False

    environment.setitem(
        sys.modules, "prometheus_client.values", types.SimpleNamespace(ValueClass=MutexValue)
    )
    with pytest.raises(RuntimeError, match="preload_app"):
        multiprocess.prepare_directory()
