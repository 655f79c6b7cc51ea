"""``python manage.py bench_cold``: a fresh worker's first list request against its warm ones."""

from __future__ import annotations

import statistics

from django.core.management.base import BaseCommand

from bench.cold import PATH, cold_runs, freshness_after_load, load_average
from bench.scenarios import count_customers


class Command(BaseCommand):
    help = (
        "Starts the API's gunicorn with one worker RESTARTS times; each time the first "
        f"{PATH} once /readyz is 200, against the median of WARM more (issue 33: at most 2x)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--restarts", type=int, default=7, help="fresh workers (7)")
        parser.add_argument("--warm", type=int, default=20, help="warm requests each (20)")
        parser.add_argument(
            "--after-load",
            type=int,
            default=None,
            metavar="N",
            help="also replace the data with generate_data --n N under two workers and time "
            "how soon after the swap every answer has the new count (the data is replaced!)",
        )

    def handle(self, *args, restarts: int, warm: int, after_load: int | None, **options) -> None:
        self.stdout.write(f"{count_customers():,} customers; load average {load_average()}")
        self.stdout.write("run | first (ms) | warm median (ms) | first / warm | request reads")
        runs = cold_runs(restarts, warm)
        for number, run in enumerate(runs, start=1):
            self.stdout.write(
                f"{number} | {run.first_ms:.1f} | {run.warm_ms:.1f} | {run.ratio:.2f} | "
                f"{run.request_reads}"
            )
        self.stdout.write(
            f"median | {statistics.median(r.first_ms for r in runs):.1f} | "
            f"{statistics.median(r.warm_ms for r in runs):.1f} | "
            f"{statistics.median(r.ratio for r in runs):.2f} | "
            f"{sum(r.request_reads for r in runs)}; load average {load_average()}"
        )
        if after_load is not None:
            fresh = freshness_after_load(after_load)
            took = "never" if fresh.seconds is None else f"{fresh.seconds * 1000:.0f} ms"
            self.stdout.write(
                f"after generate_data --n {after_load}: count {fresh.before:,} -> {fresh.after:,}, "
                f"every answer's from {took} after the swap; load average {load_average()}"
            )
