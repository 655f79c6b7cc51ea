"""bench_writes and bench_history end to end on small data: every figure
reported and recorded, and the data, the history and the triggers as they were."""

from __future__ import annotations

import csv

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from core.dataset.loader import customer_dataset_replace
from core.models import HistoryEvent
from core.tests.dataset.snapshots import table_digest
from core.tests.read_table import drift

pytestmark = pytest.mark.django_db(transaction=True)


def test_bench_writes_times_every_variant_and_an_import_and_changes_nothing(capsys, reports_dir):
    customer_dataset_replace(n=300, chunk=300, seed=2)
    before, events = table_digest(), HistoryEvent.objects.count()
    call_command("bench_writes", repeat=1, patches=2, import_rows=100)
    out = capsys.readouterr().out
    assert "PATCH p50 (ms): all triggers " in out
    assert "no trigger (floor)" in out
    assert "bulk-update of 300 customers through the API: " in out
    assert "import of 100 rows: " in out
    assert "(50 created, 50 updated, 0 invalid)" in out
    assert "the same file again: " in out
    assert ", 0 changes" in out
    assert "0 5xx" in out
    # Every write was rolled back, the triggers' switches with it.
    assert table_digest() == before
    assert HistoryEvent.objects.count() == events
    assert drift() == []
    with (reports_dir / "writes.csv").open() as f:
        rows = list(csv.DictReader(f))
    measures = {(row["measure"], row["variant"]) for row in rows}
    assert ("update_100000_records_s", "no trigger (floor)") in measures
    assert ("import_again_changes", "all triggers") in measures
    assert {row["customers"] for row in rows} == {"300"}


def test_bench_writes_refuses_nonsense(reports_dir):
    with pytest.raises(CommandError, match="--repeat"):
        call_command("bench_writes", repeat=0)


def test_bench_history_reads_a_page_erases_and_leaves_the_customers(capsys, reports_dir):
    customer_dataset_replace(n=200, chunk=200, seed=2)
    before = table_digest()
    call_command("bench_history", repeat=1, events=2_000)
    out = capsys.readouterr().out
    assert "a history page (1,000 events of " in out
    assert "an erasure: p50 " in out
    assert table_digest() == before
    assert (reports_dir / "history.csv").exists()
