"""bench_profile on small data: every part of the request path is accounted for."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db(transaction=True)


def test_splits_a_requests_cpu_time_between_its_parts(reports_dir, capsys):
    call_command("generate_data", n=700, chunk=700, quiet=True)
    call_command("bench_profile", requests=40, output=reports_dir)
    report = (reports_dir / "profile.md").read_text()
    assert "`GET /api/users/?page_size=50`" in report
    cpu = float(re.search(r"([\d.]+) ms of CPU per request", report).group(1))
    tables = report.split("\n\n| ")[1:]
    assert len(tables) == 2, "by part, and by library"
    for table in tables:
        rows = re.findall(r"^\| [^|]+ \| ([\d.]+) \| \d+% \|$", "| " + table, re.MULTILINE)
        assert len(rows) >= 6
        assert sum(map(float, rows)) == pytest.approx(cpu, rel=0.02)
    assert "the page: query building, SQL, fetching the rows" in report


def test_profiles_a_cursor_page_and_compares_the_json_and_binding_paths(reports_dir):
    call_command("generate_data", n=700, chunk=700, quiet=True)
    call_command(
        "bench_profile",
        requests=40,
        output=reports_dir,
        json=True,
        url=["/api/users/?page_size=5&cursor=next"],
    )
    report = (reports_dir / "profile.md").read_text()
    # The cursor of the first page's next link, resolved before profiling.
    assert re.search(r"`GET /api/users/\?cursor=[\w-]{40,}&page_size=5`", report), report
    assert "(same bytes: True)" in report
    assert re.search(r"client [\d.]+ ms, server [\d.]+ ms, prepared [\d.]+ ms", report)


def test_run_only_runs_the_requests_and_writes_no_report(reports_dir):
    call_command("generate_data", n=700, chunk=700, quiet=True)
    call_command("bench_profile", run=3, url=["/api/users/?page_size=5&cursor=next"])
    assert not (reports_dir / "profile.md").exists()
