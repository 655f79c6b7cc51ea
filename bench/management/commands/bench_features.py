"""``python manage.py bench_features``: search, export and admin timings on the loaded data."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from bench.features import feature_figures
from bench.scenarios import count_customers


class Command(BaseCommand):
    help = (
        "Time the fuzzy search, the full export (CSV and NDJSON) and the admin changelists "
        "(writes: bench_writes)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--repeat", type=int, default=10, help="timed runs per URL")

    def handle(self, *args, repeat: int, **options) -> None:
        self.stdout.write(f"{count_customers():,} customers")
        for line in feature_figures(max(1, repeat)):
            self.stdout.write(line)
