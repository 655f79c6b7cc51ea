"""bench_features end to end on small data."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from core.dataset.loader import customer_dataset_replace


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
