"""bench_matrix end to end on a small dataset, and the checks that make it honest."""

from __future__ import annotations

import csv
import random

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Q

from bench.matrix import checks, combinations, oracle, profiling, reports
from core.customers.filters import CustomerFilter

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def customers(reports_dir):
    call_command("generate_data", n=3000, chunk=1000, quiet=True)


def run(reports_dir, **options):
    call_command(
        "bench_matrix",
        sample=options.pop("sample", 40),
        repeat=1,
        warmup=0,
        worst=3,
        output=reports_dir,
        **options,
    )


def test_writes_csv_markdown_chart_and_the_worst_plans(customers, reports_dir):
    run(reports_dir, seed=3)
    with (reports_dir / "matrix.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == reports.CSV_COLUMNS
    assert len(rows) == 40
    assert all(row["check"] == "ok" for row in rows), [r for r in rows if r["check"] != "ok"]
    assert all(row["db_customers"] == "3000" for row in rows)
    assert {row["position"].split(",")[0].split(" ")[0] for row in rows} == {"page", "cursor"}
    # Every combination's true count is reported beside the API's.
    assert all(row["true_count"].isdigit() for row in rows)
    # Its statements (a look-up and the page statement at most), and each plan
    # forced as raw SQL beside the chosen one.
    assert all(1 <= int(row["sql_queries"]) <= 2 for row in rows)
    for row in rows:
        fastest = min(float(row["walk_ms"]), float(row["sort_ms"]))
        assert float(row["plan_regret"]) == pytest.approx(
            float(row["chosen_ms"]) / fastest, rel=0.01
        )
    report = (reports_dir / "matrix.md").read_text()
    for section in (
        "## Regret and statements",
        "## Distribution of the per-combination p50",
        "## The 3 worst combinations",
        "## Counts against the truth",
        "## Values read off the data",
        "## Every combination",
    ):
        assert section in report
    assert (reports_dir / "matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plans = sorted((reports_dir / "matrix-explain").iterdir())
    assert len(plans) == 3
    assert "Execution Time" in plans[0].read_text()


def test_the_same_seed_makes_the_same_combinations(customers):
    ref = oracle.Reference()
    try:
        profile = profiling.profile_data(ref, 5, lambda line: None)
        again = profiling.profile_data(ref, 5, lambda line: None)
    finally:
        ref.close()
    assert profile.values == again.values
    first = combinations.sample_combinations(profile, 60, 5)
    assert first == combinations.sample_combinations(profile, 60, 5)
    served, refused = first
    assert len(served) == 60
    # Refused orderings are kept apart: checked for their 400, not timed.
    assert refused
    assert all("," in c.ordering for c in refused)
    # Every filter is there, at every band the data has.
    named = {v.name for v in profile.values} | {m.split(":")[0] for m in profile.missing}
    assert named == set(CustomerFilter.base_filters)
    positions = {c.position for c in served}
    assert positions == set(combinations.POSITIONS)


def test_a_filter_that_is_ignored_fails_the_run(customers, reports_dir, monkeypatch):
    # The original's bug: a filter silently dropped. Which filter appears in
    # the sample is fixed by the seed; break one that does.
    ref = oracle.Reference()
    try:
        profile = profiling.profile_data(ref, 3, lambda line: None)
    finally:
        ref.close()
    served, _ = combinations.sample_combinations(profile, 40, 3)
    name = next(f.name for c in served for f in c.filters if f.band != oracle.COMMON)
    monkeypatch.setattr(CustomerFilter.base_filters[name], "condition", lambda value: Q())
    with pytest.raises(CommandError, match="wrong answers"):
        run(reports_dir, seed=3)
    with (reports_dir / "matrix.csv").open() as f:
        wrong = [row for row in csv.DictReader(f) if row["check"] != "ok"]
    assert wrong
    assert all(name in row["filters"] for row in wrong)


def test_too_little_data_is_refused(reports_dir):
    call_command("generate_data", n=500, chunk=500, quiet=True)
    with pytest.raises(CommandError, match="at least 1000"):
        run(reports_dir)


def test_publishing_from_uncommitted_code_is_refused(monkeypatch):
    from core import run_records

    monkeypatch.setattr(run_records, "git_commit", lambda: "0123456789ab-dirty")
    with pytest.raises(CommandError, match="commit your changes"):
        call_command("bench_matrix", output=run_records.PUBLISHED_DIR / "matrix-test")
    assert not (run_records.PUBLISHED_DIR / "matrix-test").exists()


# -- the checks themselves ---------------------------------------------------------


def row(i, points, city="Vienna", created="2024-01-01T00:00:00+00:00"):
    return {
        "id": i,
        "first_name": "A",
        "last_name": "B",
        "gender": "f",
        "customer_id": f"C{i}",
        "phone_number": "+43 1",
        "birthday": None,
        "created": created,
        "last_updated": created,
        "address": {"city": city, "country": "Austria", "city_code": "1010"},
        "relationship": {"points": points, "last_activity": created},
    }


def combination(ordering="", filters=()):
    return combinations.Combination(tuple(filters), None, ordering, combinations.FIRST)


def test_the_order_check_sees_a_row_out_of_order_and_ties_broken_by_id():
    by_points = combination("-relationship__points")
    assert checks.check_rows(by_points, [row(1, 9), row(2, 5)], 2, None) is None
    assert "out of order" in checks.check_rows(by_points, [row(1, 5), row(2, 9)], 2, None)
    # Equal points: the id breaks the tie, in the last field's direction.
    assert checks.check_rows(by_points, [row(2, 5), row(1, 5)], 2, None) is None
    assert "out of order" in checks.check_rows(by_points, [row(1, 5), row(2, 5)], 2, None)


def test_the_filter_check_sees_a_row_that_does_not_match():
    vienna = profiling.FilterValue("city", "vien", oracle.MEDIUM, 10)
    minimum = profiling.FilterValue("points_min", "5", oracle.MEDIUM, 10)
    c = combination(filters=[vienna, minimum])
    assert checks.check_rows(c, [row(1, 5), row(2, 7)], 2, None) is None
    assert "do not meet city=vien" in checks.check_rows(c, [row(1, 5, "Graz")], 1, None)
    assert "do not meet points_min=5" in checks.check_rows(c, [row(1, 4)], 1, None)
    assert "expected 2 rows" in checks.check_rows(c, [row(1, 5)], 2, None)


def test_the_next_page_check_sees_overlap_and_going_back():
    c = combination("relationship__points")
    assert checks.check_next(c, [row(1, 1), row(2, 2)], [row(3, 3)]) is None
    assert "repeats" in checks.check_next(c, [row(1, 1), row(2, 2)], [row(2, 2)])
    assert "goes back" in checks.check_next(c, [row(1, 1), row(2, 5)], [row(3, 3)])


def test_bands_are_read_off_the_share_of_customers():
    assert oracle.band_of(0, 1000) is None
    assert oracle.band_of(1, 3000) == oracle.RARE
    assert oracle.band_of(30, 1000) == oracle.MEDIUM
    assert oracle.band_of(100, 1000) is None  # between medium and common
    assert oracle.band_of(300, 1000) == oracle.COMMON


def test_a_deck_deals_every_card_before_any_twice():
    deck = combinations.Deck(range(5), random.Random(1))
    assert sorted(deck.deal() for _ in range(5)) == list(range(5))
