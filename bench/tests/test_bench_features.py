"""bench_features end to end on small data."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from core.dataset.loader import customer_dataset_replace
from core.tests.read_table import drift


@pytest.mark.django_db(transaction=True)
def test_bench_features_reports_search_export_and_admin(capsys, reports_dir):

    customer_dataset_replace(n=700, chunk=700, seed=2)
    call_command("bench_features", repeat=1)
    out = capsys.readouterr().out
    assert "search 'jon smith': p50" in out
    assert "export csv: 700 rows" in out
    assert "export ndjson: 700 rows" in out
    # Page 2,000 does not exist in 700 rows (the admin redirects); the rest are 200.
    assert out.count("(HTTP 200)") == 9


@pytest.mark.django_db(transaction=True)
def test_bench_features_writes_times_a_patch_and_a_bulk_update_and_keeps_the_data(
    capsys, reports_dir
):
    customer_dataset_replace(n=300, chunk=300, seed=2)
    with connection.cursor() as cursor:
        cursor.execute("SELECT sum(points) FROM core_customerrelationship")
        points = cursor.fetchone()[0]
    call_command("bench_features", writes=5, writes_only=True)
    out = capsys.readouterr().out
    assert "PATCH /api/users/<id>/ (points or first name): p50 " in out
    assert "UPDATE of 100,000 loyalty records' points: " in out
    assert "search 'jon smith'" not in out  # --writes-only: no features
    with connection.cursor() as cursor:
        # The bulk update is rolled back; only the PATCHes changed points, and
        # the read table still equals its join.
        cursor.execute("SELECT sum(points) FROM core_customerrelationship")
        assert cursor.fetchone()[0] != points + 300
    assert drift() == []


def test_bench_features_writes_only_needs_writes():
    with pytest.raises(CommandError, match="--writes must be at least 1"):
        call_command("bench_features", writes_only=True)
