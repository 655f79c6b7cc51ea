"""``python manage.py bench_plans``: the per-row costs the list's plan choice weighs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from bench.plan_costs import measure
from core import run_records
from core.customers import tunables

#: Below this, the cache holds everything and the costs mean little.
MINIMUM_CUSTOMERS = 1000

FILE = "plans.csv"


class Command(BaseCommand):
    help = (
        "Measure what a walk of an index, a read through an index, a sequential scan and a "
        "sort cost per row on the loaded data , beside the "
        "constants in use (core.customers.tunables)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--repeat", type=int, default=7, help="timed runs of each step")
        parser.add_argument(
            "--output",
            type=Path,
            default=None,
            help="report folder (default CRM_REPORTS_DIR, reports/; docs/benchmarks/plans "
            "to publish)",
        )

    def handle(self, *args, repeat: int, output: Path | None, **options) -> None:
        folder = run_records.reports_dir(output)
        costs = measure(max(1, repeat))
        if costs.customers < MINIMUM_CUSTOMERS:
            raise CommandError(f"only {costs.customers} customers: load more with generate_data")
        row = {
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": run_records.git_commit(),
            **costs.as_row(),
        }
        path = folder / FILE
        run_records.append_csv(path, list(row), row)
        self.stdout.write(
            f"{costs.customers:,} customers ({costs.walked:,} walked, "
            f"{costs.read:,} read); microseconds per row, measured / in use:"
        )
        for name in ("scattered_row_us", "sequential_row_us", "index_entry_us", "sort_row_us"):
            self.stdout.write(
                f"  {name:<18} {getattr(costs, name):7.3f}  {getattr(tunables, name.upper()):7.3f}"
            )
        self.stdout.write(
            f"reading the planning sample: {costs.sample_read_s:.3f} s "
            f"(in use: {tunables.SAMPLE_READ_SECONDS} s)"
        )
        self.stdout.write("walks, microseconds per entry:")
        for order, cost in costs.walks.items():
            self.stdout.write(f"  ORDER BY {order:<28} {cost:7.3f}")
        self.stdout.write(f"Wrote {path}")
