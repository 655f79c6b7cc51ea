"""The README's benchmark tables are the published runs' figures: regenerated
from docs/benchmarks/ they come out exactly as committed, and a run published
under a new label is a new row without any change to the code."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from bench.matrix.reports import CSV_COLUMNS, read_runs
from bench.readme_tables import FILES, UnknownTable, regenerate
from core import run_records


def test_an_unknown_table_is_refused():
    with pytest.raises(UnknownTable):
        regenerate("<!-- table:nothing-such -->\n<!-- /table -->")


def published_copy(tmp_path: Path, folder: str) -> Path:
    published = tmp_path / "benchmarks"
    shutil.copytree(run_records.PUBLISHED_DIR / folder, published / folder)
    return published


def add_run(folder: Path, label: str, stamp: str, *, p50: float, regret: bool) -> None:
    """A run under ``label``, a copy of the folder's latest with every p50 set,
    written the way bench_matrix appends (a new header starts a new file)."""
    latest = read_runs(folder)[-1]
    path = folder / "matrix.csv"
    with path.open(newline="", encoding="utf-8") as f:
        rows = [row for row in csv.DictReader(f) if row["timestamp"] == latest.stamp]
    columns = CSV_COLUMNS if regret else tuple(rows[0])
    for row in rows:
        row.update(timestamp=stamp, run=label, p50_ms=str(p50), sql_queries="2")
        if regret:
            row.update(chosen_ms="1.0", walk_ms="1.0", sort_ms="4.0")
        run_records.append_csv(path, columns, {c: row.get(c, "") for c in columns})


def test_a_new_label_is_a_new_row_and_the_after_of_before_and_after(tmp_path):
    published = published_copy(tmp_path, "matrix-3m")
    folder = published / "matrix-3m"
    labels = [run.label for run in read_runs(folder)]
    add_run(folder, "one-table-3m", "2099-01-01T00:00:00+00:00", p50=5.0, regret=True)
    # The older header was kept beside the new file, and both are read.
    assert (folder / "matrix.1.csv").exists()
    assert [run.label for run in read_runs(folder)] == [*labels, "one-table-3m"]

    table = regenerate("<!-- table:matrix-3m -->\n<!-- /table -->", published=published)
    assert "| one-table-3m |" in table
    assert all(f"| {label} |" in table for label in labels)
    summary = regenerate("<!-- table:matrix-summary -->\n<!-- /table -->", published=published)
    rows = [line for line in summary.splitlines() if line.startswith("| [")]
    assert [label in rows[0] for label in (labels[-1], "one-table-3m")] == [True, False]
    assert "one-table-3m" in rows[1]
    assert "| 5.0 |" in rows[1]
    assert "| 5.00 / 5.00 |" in rows[1]


def test_the_targets_are_marked_from_the_latest_runs(tmp_path):
    published = published_copy(tmp_path, "matrix-3m")
    add_run(published / "matrix-3m", "fast", "2099-01-01T00:00:00+00:00", p50=5.0, regret=True)
    targets = regenerate("<!-- table:list-targets -->\n<!-- /table -->", published=published)
    lines = {line.split(" | ")[0]: line for line in targets.splitlines()}
    assert lines["| 3M, seed 1: every combination ≤ 50 ms"].endswith("| met |")
    assert lines["| 3M, seed 1: median ≤ 8 ms"].endswith("| met |")
    # Regret: 5 ms over the faster plan's 1 ms.
    assert lines["| 3M, seed 1: regret median ≤ 1.5, worst ≤ 3"].endswith("| **not met** |")
    assert lines["| SQL statements per list request ≤ 2"].endswith("| met |")


def test_links_are_relative_to_the_file():
    text = "<!-- table:matrix-now -->\n<!-- /table -->"
    assert "](docs/benchmarks/matrix-3m/matrix.md)" in regenerate(text)
    assert "](benchmarks/matrix-3m/matrix.md)" in regenerate(text, where="docs")
    assert "](matrix-3m/matrix.md)" in regenerate(text, where="docs/benchmarks")


def test_check_fails_on_a_stale_table(tmp_path, settings):
    for name in FILES:
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("<!-- table:generate -->\n| stale |\n<!-- /table -->\n")
    settings.BASE_DIR = tmp_path
    with pytest.raises(CommandError, match="out of date"):
        call_command("readme_tables", "--check")
    call_command("readme_tables")
    assert "| stale |" not in (tmp_path / "README.md").read_text()
