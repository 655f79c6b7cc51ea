"""``python manage.py bench_http``: serving capacity, the API beside a raw floor."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import signal
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from bench import http_load, locust_load, reports, scenarios, wrk_load
from core import run_records
from crm.replicas import replica_aliases

LOCUST_COLUMNS = (
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
        "Serve the API the way the README says (nginx in front of gunicorn, production "
        "settings) on loopback and measure its capacity with wrk beside a raw floor that "
        "answers the same pages with the same SQL and no framework; or, with --generator "
        "locust, drive a realistic mix that includes invalid requests."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--generator",
            choices=["wrk", "locust"],
            default="wrk",
            help="wrk (capacity, API and floor; default) or locust (realistic mix)",
        )
        parser.add_argument(
            "--connections", type=int, default=16, help="wrk's concurrent connections (16)"
        )
        parser.add_argument(
            "--duration", type=int, default=15, help="seconds per wrk run, or of locust (15)"
        )
        parser.add_argument("--rounds", type=int, default=2, help="rounds of every plan (2)")
        parser.add_argument(
            "--plan",
            action="append",
            choices=list(wrk_load.PLANS),
            default=None,
            help="wrk plans to run (repeatable; default all)",
        )
        parser.add_argument("--no-floor", action="store_true", help="measure the API only")
        parser.add_argument(
            "--no-proxy",
            action="store_true",
            help="clients talk to gunicorn directly, without nginx (not the README's setup)",
        )
        parser.add_argument(
            "--pgbouncer",
            action="store_true",
            help="API and floor reach the database through PgBouncer in transaction mode",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=http_load.default_workers(),
            help="gunicorn workers (default: crm.gunicorn_conf's, one per core plus one)",
        )
        parser.add_argument("--users", type=int, default=16, help="locust's clients (16)")
        parser.add_argument(
            "--invalid-share",
            type=float,
            default=0.0,
            help="locust: share of deliberately invalid requests, which must get a 400",
        )
        parser.add_argument(
            "--output", type=Path, default=None, help="report folder (default CRM_REPORTS_DIR)"
        )

    def handle(self, *args, generator: str, **options) -> None:
        if not (1 <= options["duration"] <= 600 and 1 <= options["workers"] <= 64):
            raise CommandError("--duration 1..600 s, --workers 1..64")
        customers = scenarios.count_customers()
        if customers < scenarios.MINIMUM_CUSTOMERS:
            raise CommandError(f"only {customers} customers: run generate_data first")
        # Refused up front from uncommitted code when publishing; noted in runs.log.
        options["output"] = run_records.reports_dir(options["output"])
        # A SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C does, through
        # the stack's context managers: nginx, gunicorn, PgBouncer and wrk are
        # stopped rather than left serving.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        try:
            if generator == "locust":
                self.locust(customers, **options)
            else:
                self.capacity(customers, **options)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc

    def capacity(self, customers: int, *, output: Path, **options) -> None:
        if not (1 <= options["connections"] <= 1024 and 1 <= options["rounds"] <= 20):
            raise CommandError("--connections 1..1024, --rounds 1..20")
        report = wrk_load.run_capacity(
            connections=options["connections"],
            duration=options["duration"],
            rounds=options["rounds"],
            workers=options["workers"],
            plans=options["plan"] or list(wrk_load.PLANS),
            floor=not options["no_floor"],
            proxy=not options["no_proxy"],
            pgbouncer=options["pgbouncer"],
            progress=self.stdout.write,
        )
        paths = reports.write_capacity_reports(report, output=output, customers=customers)
        self.stdout.write(paths["md"].read_text())
        self.stdout.write("load generator: wrk; wrote " + ", ".join(map(str, paths.values())))
        failed = [run for run in report.runs if run.failed]
        if failed:
            raise CommandError(
                "failed requests: "
                + "; ".join(f"{r.plan}/{r.target} round {r.round}: {r.errors}" for r in failed)
            )

    def locust(self, customers: int, *, output: Path, **options) -> None:
        if importlib.util.find_spec("locust") is None:
            raise CommandError("locust is not installed: pip install -e '.[bench]'")
        if not 1 <= options["users"] <= 256:
            raise CommandError("--users 1..256")
        if not 0 <= options["invalid_share"] <= 0.9:
            raise CommandError("--invalid-share must be between 0 and 0.9")
        result = locust_load.run_locust(
            users=options["users"],
            duration=options["duration"],
            workers=options["workers"],
            invalid_share=options["invalid_share"],
            progress=self.stdout.write,
        )
        output.mkdir(parents=True, exist_ok=True)
        row = {
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "git_commit": run_records.git_commit(),
            "postgres_version": run_records.postgres_version(),
            "db_customers": customers,
            "invalid_share": options["invalid_share"],
            "duration_s": options["duration"],
            "replicas": len(replica_aliases()),
            **{
                k: v
                for k, v in dataclasses.asdict(result).items()
                if k not in ("duration", "failure_kinds")
            },
        }
        run_records.append_csv(output / "load.csv", LOCUST_COLUMNS, row)
        self.stdout.write(
            f"load generator: locust; {result.requests:,} requests in {options['duration']} s: "
            f"{result.requests_per_second:,.0f} requests/s; p50 {result.p50_ms:.0f} ms, "
            f"p95 {result.p95_ms:.0f} ms, p99 {result.p99_ms:.0f} ms; {result.failures} "
            f"failures ({result.server_errors} server errors); at most "
            f"{result.max_db_connections} database connections for {result.workers} workers"
        )
        for kind, occurrences in result.failure_kinds.items():
            self.stdout.write(f"  failed: {kind} x{occurrences}")
