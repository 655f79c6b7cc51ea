"""bench_http end to end: a real gunicorn, a real locust, on loopback, a few seconds."""

from __future__ import annotations

import csv
import socket

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db(transaction=True)


def test_serves_measures_and_stops_with_no_errors(reports_dir, capsys, monkeypatch):
    call_command("generate_data", n=2000, chunk=1000, quiet=True)
    ports = []
    from bench import http_load

    original = http_load.free_port
    monkeypatch.setattr(http_load, "free_port", lambda: ports.append(original()) or ports[-1])
    call_command("bench_http", users=4, duration=4, workers=2, invalid_share=0.3)
    out = capsys.readouterr().out
    assert "; 0 failures (0 server errors)" in out, out
    with (reports_dir / "load.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert int(row["requests"]) > 20
    assert float(row["requests_per_second"]) > 0
    assert row["failures"] == row["server_errors"] == "0"
    assert 1 <= int(row["max_db_connections"]) <= int(row["connection_limit"]) + 1
    # The server it started is gone: its port accepts nothing.
    with socket.socket() as s:
        s.settimeout(1)
        with pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", ports[0]))
