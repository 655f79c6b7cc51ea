"""``python manage.py bench_writes``: what writes cost, with every trigger and with none."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from bench.writes import BULK_RECORDS, IMPORT_ROWS, import_figures, import_twice
from bench.writes import write_figures as measure_writes
from core import run_records

FILE = "writes.csv"
COLUMNS = [
    "at",
    "commit",
    "customers",
    "postgresql",
    "measure",
    "variant",
    "value",
    "unit",
    "load_average_1m",
    "command",
]


class Command(BaseCommand):
    help = (
        "Time a PATCH, an UPDATE of 100,000 loyalty records (every trigger, without the "
        "history's, none: the floor) and the same change through POST /api/users/bulk-update/, "
        "interleaved and rolled back; then an import of --import-rows rows (half new) and the "
        "same file again, rolled back, with the list's p50 beside it."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--repeat", type=int, default=3, help="rounds of each write")
        parser.add_argument("--patches", type=int, default=20, help="PATCHes per variant a round")
        parser.add_argument(
            "--import-rows",
            type=int,
            default=IMPORT_ROWS,
            help=f"rows of the imported file (default {IMPORT_ROWS:,}; 0: no import)",
        )
        parser.add_argument(
            "--output",
            type=Path,
            default=None,
            help="report folder (default CRM_REPORTS_DIR; docs/benchmarks/writes to publish)",
        )
        # The import's own process (its peak RSS is the import's).
        parser.add_argument("--import-child", type=Path, default=None, help=argparse.SUPPRESS)

    def handle(
        self,
        *args,
        repeat: int,
        patches: int,
        import_rows: int,
        output: Path | None,
        import_child: Path | None,
        **options,
    ) -> None:
        if import_child is not None:
            self.stdout.write(json.dumps(import_twice(import_child)))
            return
        if repeat < 1 or patches < 1 or import_rows < 0:
            raise CommandError("--repeat and --patches must be at least 1, --import-rows 0 or more")
        folder = run_records.reports_dir(output)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM core_appuser")
            customers = cursor.fetchone()[0]
        writes = measure_writes(repeat=repeat, patches=patches)
        rows = [
            *(("patch_p50_ms", name, v, "ms") for name, v in writes.patch_ms.items()),
            *(
                (f"update_{BULK_RECORDS}_records_s", name, v, "s")
                for name, v in writes.bulk_s.items()
            ),
            (
                f"bulk_update_api_{writes.bulk_api_matched}_s",
                "all triggers",
                writes.bulk_api_s,
                "s",
            ),
        ]
        lines = [
            f"{customers:,} customers",
            "PATCH p50 (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in writes.patch_ms.items()),
            f"UPDATE of {BULK_RECORDS:,} loyalty records (s): "
            + ", ".join(f"{k} {v:.2f}" for k, v in writes.bulk_s.items()),
            f"bulk-update of {writes.bulk_api_matched:,} customers through the API: "
            f"{writes.bulk_api_s:.2f} s",
        ]
        floor = writes.bulk_s["no trigger (floor)"]
        lines.append(
            f"against the floor: UPDATE {writes.bulk_s['all triggers'] / floor:.1f}x, "
            f"bulk-update {writes.bulk_api_s / floor:.1f}x"
        )
        if import_rows:
            imported = import_figures(import_rows)
            child = imported.child
            rows += [
                (f"import_{imported.rows}_rows_s", "all triggers", child["import_s"], "s"),
                ("import_peak_rss_mb", "all triggers", child["peak_rss_mb"], "MB"),
                (f"import_again_{imported.rows}_rows_s", "all triggers", child["again_s"], "s"),
                (
                    "import_again_changes",
                    "all triggers",
                    child["again_created"] + child["again_updated"],
                    "rows",
                ),
                ("list_p50_idle_ms", "", imported.list_idle_ms, "ms"),
                ("list_p50_beside_import_ms", "", imported.list_beside_ms, "ms"),
                ("list_5xx_beside_import", "", imported.list_errors, "requests"),
            ]
            lines += [
                f"import of {imported.rows:,} rows: {child['import_s']:.1f} s "
                f"({child['import_created']:,.0f} created, {child['import_updated']:,.0f} updated, "
                f"{child['import_invalid']:,.0f} invalid), peak RSS {child['peak_rss_mb']:.0f} MB",
                f"the same file again: {child['again_s']:.1f} s, "
                f"{child['again_created'] + child['again_updated']:,.0f} changes",
                f"the list beside it: p50 {imported.list_beside_ms:.1f} ms "
                f"({imported.list_requests:,} pages) against {imported.list_idle_ms:.1f} idle, "
                f"{imported.list_errors} 5xx",
            ]
        path = folder / FILE
        common = {
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": run_records.git_commit(),
            "customers": customers,
            "postgresql": run_records.postgres_version(),
            "load_average_1m": f"{os.getloadavg()[0]:.2f}",
            "command": run_records.command_line(),
        }
        for measure, variant, value, unit in rows:
            run_records.append_csv(
                path,
                COLUMNS,
                {
                    **common,
                    "measure": measure,
                    "variant": variant,
                    "value": f"{value:.3f}",
                    "unit": unit,
                },
            )
        lines.append(f"Wrote {path}")
        self.stdout.write("\n".join(lines))
