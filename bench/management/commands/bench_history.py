"""``python manage.py bench_history``: reading a customer's history, erasing one, and its size."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.core.management.base import BaseCommand

from bench.history import CUSTOMER_EVENTS, measure
from core import run_records

FILE = "history.csv"


class Command(BaseCommand):
    help = (
        f"Time a customer's history page ({CUSTOMER_EVENTS:,} events of theirs among --events) "
        "and an erasure (rolled back); report the bytes per event. What the history costs "
        "writes: bench_writes."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--repeat", type=int, default=5, help="timed erasures (pages: 5x)")
        parser.add_argument(
            "--events", type=int, default=10_000_000, help="events in all (filled up to this)"
        )
        parser.add_argument(
            "--output",
            type=Path,
            default=None,
            help="report folder (default CRM_REPORTS_DIR; docs/benchmarks/history to publish)",
        )

    def handle(self, *args, repeat: int, events: int, output: Path | None, **options) -> None:
        folder = run_records.reports_dir(output)
        figures = measure(repeat=max(1, repeat), events=events)
        row = {
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": run_records.git_commit(),
            "postgresql": run_records.postgres_version(),
            "history_page_ms": f"{figures.history_page_ms:.2f}",
            "erase_ms": f"{figures.erase_ms:.1f}",
            "events": figures.events,
            "event_row_bytes": figures.event_row_bytes,
            "bytes_per_event": f"{figures.bytes_per_event:.0f}",
            "command": run_records.command_line(),
        }
        path = folder / FILE
        run_records.append_csv(path, list(row), row)
        lines = [
            f"a history page ({CUSTOMER_EVENTS:,} events of {figures.events:,}): p50 "
            f"{figures.history_page_ms:.2f} ms",
            f"an erasure: p50 {figures.erase_ms:.1f} ms",
            f"an event of one changed field: {figures.event_row_bytes} bytes; "
            f"table and indexes {figures.bytes_per_event:.0f} bytes per event",
            f"Wrote {path}",
        ]
        self.stdout.write("\n".join(lines))
