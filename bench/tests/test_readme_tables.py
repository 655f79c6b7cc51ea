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
from bench.readme_tables import BLOCK, FILES, UnknownTable, regenerate
from core import run_records
from crm.tests.processes import REPO

#: Tables the README must carry (a figure it quotes comes from one of them).
README_TABLES = {
    "bench-list",
    "matrix-now",
    "list-targets",
    "http-before-after",
    "writes",
}


@pytest.mark.parametrize("name", FILES)
def test_every_published_figure_in_the_docs_is_current(name):
    """Fails when a table no longer says what docs/benchmarks/ holds (a run was
    published, or a table was edited by hand): run ``python manage.py readme_tables``."""
    text = (REPO / name).read_text(encoding="utf-8")
    assert BLOCK.search(text), f"{name} has no generated table"
    assert regenerate(text, where=str(Path(name).parent)) == text


def test_the_readme_carries_the_headline_tables():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert {match["name"] for match in BLOCK.finditer(text)} >= README_TABLES


def test_the_readme_stays_short():
    """A newcomer reads it in ten minutes; the rest is in docs/."""
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 400


def test_the_command_checks_without_writing():
    before = {name: (REPO / name).read_text(encoding="utf-8") for name in FILES}
    call_command("readme_tables", "--check")
    assert before == {name: (REPO / name).read_text(encoding="utf-8") for name in FILES}


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
    add_run(folder, "newest-3m", "2099-01-01T00:00:00+00:00", p50=5.0, regret=True)
    # Whether the new run started a new file (an older header is kept beside
    # it as matrix.1.csv) or was appended, every run is read.
    assert [run.label for run in read_runs(folder)] == [*labels, "newest-3m"]

    table = regenerate("<!-- table:matrix-3m -->\n<!-- /table -->", published=published)
    assert "| newest-3m |" in table
    assert all(f"| {label} |" in table for label in labels)
    summary = regenerate("<!-- table:matrix-summary -->\n<!-- /table -->", published=published)
    rows = [line for line in summary.splitlines() if line.startswith("| [")]
    assert [label in rows[0] for label in (labels[-1], "newest-3m")] == [True, False]
    assert "newest-3m" in rows[1]
    assert "| 5.0 |" in rows[1]
    assert "| 5.00 / 5.00 |" in rows[1]


def test_the_targets_are_marked_from_the_latest_runs(tmp_path):
    published = published_copy(tmp_path, "matrix-3m")
    add_run(published / "matrix-3m", "fast", "2099-01-01T00:00:00+00:00", p50=5.0, regret=True)
    targets = regenerate("<!-- table:list-targets -->\n<!-- /table -->", published=published)
    rows = {
        line.split(" | ")[0]: line.split(" | ")[1]
        for line in targets.splitlines()
        if line.startswith("| ")
    }
    assert rows["| target"].startswith("3M, seed ")
    assert ": fast (" in rows["| target"]
    assert rows["| every combination ≤ 50 ms (10M: ≤ 150 ms)"] == "worst 5.0 ms, 0 over: met"
    # The plan chosen took the faster plan's 1 ms.
    assert rows["| plan regret median ≤ 1.1, worst ≤ 2"] == "1.00 / 1.00: met"
    assert rows["| SQL statements per request ≤ 2"] == "at most 2: met"
    http = next(name for name in rows if name.startswith("| bench_http"))
    assert rows[http] == "no published run"
    shutil.copytree(run_records.PUBLISHED_DIR / "http", published / "http")
    targets = regenerate("<!-- table:list-targets -->\n<!-- /table -->", published=published)
    assert "of the floor, p99 " in targets


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


def test_compare_finds_runs_in_every_csv_file_of_the_folder(tmp_path):
    published = published_copy(tmp_path, "matrix-3m")
    folder = published / "matrix-3m"
    before = read_runs(folder)[-1].label
    add_run(folder, "one-table-3m", "2099-01-01T00:00:00+00:00", p50=5.0, regret=True)
    call_command("bench_matrix", "--compare", before, "one-table-3m", "--output", str(folder))
    table = (folder / "matrix-compare.md").read_text()
    assert f"| per-combination p50 | {before} (3,000,000 customers) | one-table-3m" in table


def test_the_write_targets_are_marked_from_the_latest_run(tmp_path):
    """Issue 31's targets: within 2x (UPDATE) and 1.5x (bulk-update) of the
    UPDATE's floor, an import within 60 s, again within 20 s with no change."""
    published = tmp_path / "benchmarks"
    shutil.copytree(run_records.PUBLISHED_DIR / "writes", published / "writes")
    path = published / "writes" / "writes.csv"
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    latest = max(row["at"] for row in rows)
    figures = {
        ("update_100000_records_s", "all triggers"): "0.9",
        ("update_100000_records_s", "no trigger (floor)"): "0.5",
        ("bulk_update_api_100000_s", "all triggers"): "0.8",
        ("import_1000000_rows_s", "all triggers"): "61",
        ("import_again_1000000_rows_s", "all triggers"): "19",
    }
    for row in rows:
        if row["at"] == latest:
            row["value"] = figures.get((row["measure"], row["variant"]), row["value"])
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = regenerate("<!-- table:writes -->\n<!-- /table -->", published=published)
    marks = {line.split(" | ")[0]: line.split(" | ")[-1] for line in table.splitlines()}
    assert marks["| UPDATE of 100,000 loyalty records (s)"] == "≤ 2x the floor: met |"
    assert marks["| POST bulk-update, 100,000 customers (s)"].endswith("(1.6x): **not met** |")
    assert marks["| import of 1,000,000 rows, half new (s)"] == "≤ 60 s: **not met** |"
    assert marks["| the same 1,000,000 rows again: nothing to change (s)"].endswith(": met |")
