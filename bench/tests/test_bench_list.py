"""bench_list end to end on a small dataset: outputs, columns, and failing on wrong results."""

from __future__ import annotations

import csv

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Q

from bench import reports, runner
from core.customers.filters import CustomerFilter

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def customers(reports_dir):
    call_command("generate_data", n=3000, chunk=1000, quiet=True)


def test_writes_csv_markdown_chart_and_explain(customers, reports_dir, capsys):
    call_command("bench_list", repeat=2, warmup=0, explain=True, output=reports_dir)
    with (reports_dir / "benchmarks.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == reports.CSV_COLUMNS
    assert list(rows[0])[:9] == [
        "timestamp",
        "label",
        "url",
        "repeat",
        "status",
        "avg_ms",
        "best_ms",
        "worst_ms",
        "response_size",
    ]
    scenarios = {row["label"] for row in rows}
    assert len(scenarios) == 11
    assert {row["variant"] for row in rows} == {"baseline", "optimized", "floor"}
    assert all(row["check"] == "ok" for row in rows), [r for r in rows if r["check"] != "ok"]
    assert all(row["db_customers"] == "3000" for row in rows)
    optimized = [row for row in rows if row["variant"] == "optimized"]
    assert all(float(row["speedup"]) > 0 for row in optimized)
    # The throttle's counter; a text filter's look-up; the page statement
    # (its ids, its rows, its count). A fixed number per request, never one
    # per row.
    assert all(int(row["sql_queries"]) <= 3 for row in optimized)
    table = (reports_dir / "benchmarks.md").read_text()
    assert "| initial_page |" in table
    assert "speedup" in table
    assert (reports_dir / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plans = sorted(p.name for p in (reports_dir / "explain").iterdir())
    assert len(plans) == 11
    assert "Execution Time" in (reports_dir / "explain" / "points_desc.txt").read_text()
    # Each plan is the page statement's, not a look-up's.
    for name in plans:
        text = (reports_dir / "explain" / name).read_text()
        assert runner.PAGE_STATEMENT in text, name


def test_a_wrong_result_fails_the_command_after_writing(customers, reports_dir, monkeypatch):
    # Reintroduce the original's bug: the last_name filter silently ignored.
    monkeypatch.setattr(CustomerFilter.base_filters["last_name"], "condition", lambda value: Q())
    with pytest.raises(CommandError, match="last_name_smith/optimized"):
        call_command(
            "bench_list",
            repeat=1,
            warmup=0,
            scenario=["last_name_smith"],
            variant=["optimized"],
            output=reports_dir,
        )
    with (reports_dir / "benchmarks.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    # 50 unfiltered rows instead of the 45 Smiths: caught.
    assert row["check"].startswith("expected 45 rows, got 50")


def test_unknown_scenarios_and_too_little_data_are_refused(reports_dir):
    with pytest.raises(CommandError, match="at least 600"):
        call_command("bench_list", repeat=1, output=reports_dir)
    call_command("generate_data", n=700, chunk=700, quiet=True)
    with pytest.raises(CommandError, match="unknown scenario nope"):
        call_command("bench_list", repeat=1, scenario=["nope"], output=reports_dir)


def test_the_uninstrumented_variant_races_the_api_without_observability(customers, reports_dir):
    call_command(
        "bench_list",
        repeat=2,
        warmup=0,
        scenario=["initial_page"],
        variant=["optimized", "uninstrumented"],
        output=reports_dir,
    )
    with (reports_dir / "benchmarks.csv").open() as f:
        rows = {row["variant"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"optimized", "uninstrumented"}
    assert rows["uninstrumented"]["check"] == "ok"
    assert rows["uninstrumented"]["url"] == rows["optimized"]["url"]
    measured = runner.Runner()
    try:
        assert "X-Request-ID" in measured.client.get("/api/users/")
        bare = measured.uninstrumented.get("/api/users/")
        assert bare.status_code == 200
        assert "X-Request-ID" not in bare
        assert "Server-Timing" not in bare
    finally:
        measured.close()
