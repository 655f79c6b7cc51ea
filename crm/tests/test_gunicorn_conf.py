"""gunicorn's configuration: the limits agree with the application's."""

from __future__ import annotations

import importlib

import pytest

from crm import gunicorn_conf


def configuration(monkeypatch, **environ: str):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return importlib.reload(gunicorn_conf)


@pytest.fixture(autouse=True)
def _reload_defaults():
    yield
    importlib.reload(gunicorn_conf)


@pytest.mark.parametrize(("export_ms", "timeout"), [("600000", 630), ("1500", 32), ("0", 0)])
def test_the_worker_timeout_outlasts_the_exports(monkeypatch, export_ms, timeout):
    """A sync worker answers gunicorn's heartbeat only between requests: a
    timeout shorter than the export's would cut a slow reader's file."""
    assert configuration(monkeypatch, CRM_EXPORT_TIMEOUT_MS=export_ms).timeout == timeout
