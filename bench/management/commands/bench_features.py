"""``python manage.py bench_features``: search, export and admin timings on the loaded data."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from bench.features import feature_figures
from bench.scenarios import count_customers
from bench.writes import write_figures


class Command(BaseCommand):
    help = (
        "Time the fuzzy search, the full export (CSV and NDJSON) and the admin changelists; "
        "with --writes, also a PATCH's p50 and a bulk update of loyalty records."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--repeat", type=int, default=10, help="timed runs per URL")
        parser.add_argument(
            "--writes",
            type=int,
            default=0,
            metavar="N",
            help="also time N PATCHes (their p50) and one UPDATE of 100,000 loyalty records, "
            "rolled back (bench/writes.py); 0, the default: no writes",
        )
        parser.add_argument(
            "--writes-only",
            action="store_true",
            help="time the writes alone, not the search, export and admin",
        )

    def handle(self, *args, repeat: int, writes: int, writes_only: bool, **options) -> None:
        if writes < 0 or (writes_only and writes < 1):
            raise CommandError("--writes must be at least 1 with --writes-only, and never negative")
        self.stdout.write(f"{count_customers():,} customers")
        if not writes_only:
            for line in feature_figures(max(1, repeat)):
                self.stdout.write(line)
        if writes:
            for line in write_figures(writes):
                self.stdout.write(line)
