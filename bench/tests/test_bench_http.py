"""bench_http end to end on small data: real nginx, gunicorn, wrk and locust on loopback."""

from __future__ import annotations

import csv
import socket

import pytest
from django.core.management import call_command

from bench import servers
from crm.tests.processes import needs_programs

pytestmark = [pytest.mark.django_db(transaction=True), needs_programs("nginx")]


@pytest.fixture
def ports(monkeypatch) -> list[int]:
    """The loopback ports the benchmark's servers listened on."""
    seen: list[int] = []
    original = servers.free_port
    monkeypatch.setattr(servers, "free_port", lambda: seen.append(original()) or seen[-1])
    return seen


def assert_stopped(ports: list[int]) -> None:
    assert ports
    for port in ports:
        with socket.socket() as s:
            s.settimeout(1)
            with pytest.raises(ConnectionRefusedError):
                s.connect(("127.0.0.1", port))


@needs_programs("wrk")
def test_capacity_measures_api_and_floor_with_wrk_and_checks_every_answer(
    reports_dir, capsys, ports
):
    call_command("generate_data", n=2000, chunk=1000, quiet=True)
    call_command(
        "bench_http",
        duration=2,
        rounds=1,
        workers=2,
        connections=4,
        plan=["initial_page", "mix"],
        output=reports_dir,
    )
    out = capsys.readouterr().out
    assert "load generator: wrk" in out
    with (reports_dir / "http_benchmarks.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {(r["plan"], r["target"]) for r in rows} == {
        (plan, target) for plan in ("initial_page", "mix") for target in ("api", "floor")
    }
    assert all(int(r["requests"]) > 10 and r["failed"] == "0" for r in rows), rows
    assert all(r["proxy"] == "nginx" for r in rows)
    assert 1 <= int(rows[0]["max_db_connections"]) <= 2 + 1
    table = (reports_dir / "http_benchmarks.md").read_text()
    assert "| initial_page | api |" in table
    assert (reports_dir / "http_benchmarks.png").read_bytes()[:4] == b"\x89PNG"
    assert_stopped(ports)


def test_locust_mix_with_invalid_requests_has_no_server_errors(reports_dir, capsys, ports):
    call_command("generate_data", n=2000, chunk=1000, quiet=True)
    call_command(
        "bench_http",
        generator="locust",
        users=4,
        duration=4,
        workers=2,
        invalid_share=0.3,
        output=reports_dir,
    )
    out = capsys.readouterr().out
    assert "; 0 failures (0 server errors)" in out, out
    with (reports_dir / "load.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert int(row["requests"]) > 20
    assert row["failures"] == row["server_errors"] == "0"
    assert 1 <= int(row["max_db_connections"]) <= int(row["connection_limit"]) + 1
    assert_stopped(ports)
