"""``python manage.py bench_http``: gunicorn plus locust on loopback (see bench.http_load)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util

from django.core.management.base import BaseCommand, CommandError

from bench import http_load, scenarios
from core import run_records
from crm.replicas import replica_aliases

LOAD_COLUMNS = (
    "timestamp",
    "git_commit",
    "postgres_version",
    "db_customers",
    "workers",
    "users",
    "duration_s",
    "invalid_share",
    "requests",
    "requests_per_second",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "failures",
    "server_errors",
    "max_db_connections",
    "connection_limit",
    "replicas",
)


class Command(BaseCommand):
    help = (
        "Serve the API with gunicorn (production settings) on a loopback port, drive it with "
        "locust over a weighted mix of the bench_list scenarios, report throughput and latency."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--users", type=int, default=16, help="concurrent clients (16)")
        parser.add_argument("--duration", type=int, default=60, help="seconds of load (60)")
        parser.add_argument(
            "--workers",
            type=int,
            default=http_load.default_workers(),
            help="gunicorn workers (default: one per core, plus one)",
        )
        parser.add_argument(
            "--invalid-share",
            type=float,
            default=0.0,
            help="share of deliberately invalid requests, which must get a 400 (0 to 0.9)",
        )

    def handle(self, *args, users, duration, workers, invalid_share, **options) -> None:
        if not (1 <= users <= 256 and 1 <= duration <= 600 and 1 <= workers <= 64):
            raise CommandError("--users 1..256, --duration 1..600 s, --workers 1..64")
        if not 0 <= invalid_share <= 0.9:
            raise CommandError("--invalid-share must be between 0 and 0.9")
        if importlib.util.find_spec("locust") is None:
            raise CommandError("locust is not installed: pip install -e '.[bench]'")
        customers = scenarios.count_customers()
        if customers < scenarios.MINIMUM_CUSTOMERS:
            raise CommandError(f"only {customers} customers: run generate_data first")
        try:
            result = http_load.run_http_bench(
                users=users,
                duration=duration,
                workers=workers,
                invalid_share=invalid_share,
                progress=self.stdout.write,
            )
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        row = {
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "git_commit": run_records.git_commit(),
            "postgres_version": run_records.postgres_version(),
            "db_customers": customers,
            "invalid_share": invalid_share,
            "duration_s": duration,
            "replicas": len(replica_aliases()),
            **{
                k: v
                for k, v in dataclasses.asdict(result).items()
                if k not in ("duration", "failure_kinds")
            },
        }
        run_records.append_csv(run_records.reports_dir() / "load.csv", LOAD_COLUMNS, row)
        self.stdout.write(
            f"{result.requests:,} requests in {duration} s: {result.requests_per_second:,.0f} "
            f"requests/s; p50 {result.p50_ms:.0f} ms, p95 {result.p95_ms:.0f} ms, "
            f"p99 {result.p99_ms:.0f} ms; {result.failures} failures "
            f"({result.server_errors} server errors); at most {result.max_db_connections} "
            f"database connections for {workers} workers"
        )
        for kind, occurrences in result.failure_kinds.items():
            self.stdout.write(f"  failed: {kind} x{occurrences}")
