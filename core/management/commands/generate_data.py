"""``python manage.py generate_data --n N --chunk C``: replace the data with N customers."""

from __future__ import annotations

import argparse
import datetime as dt
import re

from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError

from core import run_records
from core.dataset.loader import (
    DEFAULT_MAINTENANCE_WORK_MEM,
    DatasetLoadError,
    customer_dataset_replace,
    default_jobs,
)
from core.dataset.progress import progress_for

REPORT_COLUMNS = (
    "timestamp",
    "git_commit",
    "postgres_version",
    "n",
    "chunk",
    "jobs",
    "generate_s",
    "copy_s",
    "build_s",
    "swap_s",
    "drop_s",
    "index_busy_s",
    "foreign_key_busy_s",
    "analyze_busy_s",
    "total_s",
    "rows_per_s",
    "peak_rss_mb",
)


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def memory_size(value: str) -> str:
    """A PostgreSQL memory setting: a number of kB, MB or GB (at least 64MB)."""
    match = re.fullmatch(r"\s*(\d+)\s*(kB|MB|GB)\s*", value)
    if match is None:
        raise argparse.ArgumentTypeError(f"must be like 512MB or 2GB, got {value!r}")
    number, unit = int(match[1]), match[2]
    if number * {"kB": 1, "MB": 1024, "GB": 1024**2}[unit] < 64 * 1024:
        raise argparse.ArgumentTypeError(f"must be at least 64MB, got {value!r}")
    return f"{number}{unit}"


class Command(BaseCommand):
    help = (
        "Replace all customers, addresses and loyalty records with N generated ones, "
        "atomically (the previous data stays until the new data is complete)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--n", type=positive_int, required=True, help="customers to create")
        parser.add_argument(
            "--chunk", type=positive_int, default=100_000, help="rows per COPY batch (memory)"
        )
        parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
        parser.add_argument(
            "--as-of",
            type=dt.date.fromisoformat,
            default=None,
            help="the 'today' that dates are relative to (default: today, UTC)",
        )
        parser.add_argument(
            "--jobs",
            type=positive_int,
            default=None,
            help=f"connections building indexes side by side (default: {default_jobs()}, "
            "the cores of this machine)",
        )
        parser.add_argument(
            "--maintenance-work-mem",
            type=memory_size,
            default=DEFAULT_MAINTENANCE_WORK_MEM,
            help="PostgreSQL memory per index-building connection "
            f"(default {DEFAULT_MAINTENANCE_WORK_MEM}; the server needs --jobs times this)",
        )
        parser.add_argument("--quiet", action="store_true", help="print nothing but errors")

    def handle(
        self,
        *args,
        n: int,
        chunk: int,
        seed: int,
        as_of,
        jobs: int | None,
        maintenance_work_mem: str,
        quiet: bool,
        **options,
    ) -> None:
        progress = progress_for(self.stderr._out, quiet)
        try:
            report = customer_dataset_replace(
                n=n,
                chunk=chunk,
                seed=seed,
                as_of=as_of,
                jobs=jobs,
                maintenance_work_mem=maintenance_work_mem,
                progress=progress,
            )
        except (DatasetLoadError, OperationalError) as exc:
            raise CommandError(f"{exc} (the previous data is unchanged)") from exc
        finally:
            progress.close()
        run_records.append_csv(
            run_records.reports_dir() / "generate_benchmarks.csv",
            REPORT_COLUMNS,
            {
                "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "git_commit": run_records.git_commit(),
                "postgres_version": run_records.postgres_version(),
                "n": n,
                "chunk": chunk,
                "jobs": report.jobs,
                **{
                    f"{phase}_s": round(report.seconds.get(phase, 0.0), 2)
                    for phase in ("generate", "copy", "build", "swap", "drop")
                },
                **{
                    f"{kind.replace(' ', '_')}_busy_s": round(report.busy.get(kind, 0.0), 2)
                    for kind in ("index", "foreign key", "analyze")
                },
                "total_s": round(report.wall_seconds, 2),
                "rows_per_s": round(report.rows_per_second),
                "peak_rss_mb": round(report.peak_rss_mb),
            },
        )
        if not quiet:
            phases = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
            busy = ", ".join(f"{k} {v:.1f} s" for k, v in report.busy.items())
            self.stdout.write(
                f"Loaded {n:,} customers, addresses and loyalty records in "
                f"{report.wall_seconds:.1f} s ({report.rows_per_second:,.0f} rows/s; {phases}; "
                f"builds on {report.jobs} connections: {busy}; "
                f"peak RSS {report.peak_rss_mb:.0f} MB)"
            )
