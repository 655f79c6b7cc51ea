"""``python manage.py bench_profile``: where one request's CPU time goes (see bench.profile)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings

from bench import binding, json_paths, profile, scenarios
from core import run_records
from core.security.api_users import api_user_create

#: profile.csv's columns (the README's table of what a request costs is made
#: from it): CPU per request, and where measured, instructions, the page's
#: JSON in Python and in PostgreSQL, its statement by each way of binding.
PROFILE_COLUMNS = (
    "timestamp",
    "url",
    "cpu_ms",
    "instructions_m",
    "json_python_ms",
    "json_database_ms",
    "bound_client_ms",
    "bound_server_ms",
    "bound_prepared_ms",
    "git_commit",
)

#: The request profiled when no --url is given: the first page.
DEFAULT_URL = "/api/users/?page_size=50"


class Command(BaseCommand):
    help = (
        "Run one API request many times in this process through the WSGI application, "
        "with DEBUG off as in production, and split its CPU time between the parts of "
        "the request path (authentication, rate limits, validation, query building, the "
        "database driver, counting, links, rendering, the framework)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--url",
            action="append",
            default=None,
            help="request to profile (repeatable; default: the first page, ?page_size=50); "
            "cursor=next in it stands for its first page's next cursor",
        )
        parser.add_argument("--requests", type=int, default=1000, help="per URL (1000)")
        parser.add_argument(
            "--output", type=Path, default=None, help="report folder (default CRM_REPORTS_DIR)"
        )
        parser.add_argument(
            "--instructions",
            action="store_true",
            help="also count each request's instructions with valgrind (a minute per URL)",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="also time each page's JSON built in Python and in PostgreSQL, and its "
            "statement bound on the client, on the server, and prepared",
        )
        parser.add_argument(
            "--run",
            type=int,
            default=None,
            metavar="N",
            help="only run each request N times, no report (what --instructions counts)",
        )

    def handle(
        self, *args, url, requests: int, output, instructions: bool, json: bool, run, **options
    ):
        if scenarios.count_customers() < scenarios.MINIMUM_CUSTOMERS:
            raise CommandError("too few customers: run generate_data first")
        if not 20 <= requests <= 100_000:
            raise CommandError("--requests 20..100000")
        from crm.wsgi import application

        if run is not None:
            return self.run_only(application, url or [DEFAULT_URL], run)
        # Refused up front from uncommitted code when publishing; noted in runs.log.
        folder = run_records.reports_dir(output)
        token = api_user_create(username="bench_profile", read_only=True)
        headers = {"Authorization": f"Token {token}"}
        lines = [
            f"# bench_profile: commit {run_records.git_commit()}, "
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
            "",
            "CPU of the Python process per request (PostgreSQL's own work not included), "
            "split by cProfile's shares; DEBUG off.",
        ]
        # The user's rate limit counts as in production, set high enough for
        # the run: its cost is part of every request.
        rates = {**settings.CRM_THROTTLE_RATES, "user": "100000000/minute"}
        limits = override_settings(DEBUG=False, CRM_THROTTLE_RATES=rates)
        rows: list[dict[str, object]] = []
        with limits:
            for asked in url or [DEFAULT_URL]:
                target = profile.second_page(application, asked, headers)
                result = profile.profile(
                    profile.wsgi_request(application, target, headers),
                    url=target,
                    requests=requests,
                )
                counted = ""
                row: dict[str, object] = {"url": asked, "cpu_ms": f"{result.cpu_ms:.3f}"}
                if instructions:
                    count = profile.instructions_per_request(asked, settings.BASE_DIR)
                    counted = f"; {count / 1e6:.2f} M instructions per request (valgrind)"
                    row["instructions_m"] = f"{count / 1e6:.2f}"
                if json:
                    paths = json_paths.json_paths(*json_paths.page_of(target))
                    counted += (
                        f"; its page's JSON in Python {paths.python_ms:.2f} ms, in PostgreSQL "
                        f"{paths.database_ms:.2f} ms (same bytes: {paths.same_bytes})"
                    )
                    bound = binding.binding_paths(*json_paths.page_of(target))
                    counted += "; its page statement " + ", ".join(
                        f"{name} {ms:.2f} ms" for name, ms in bound.items()
                    )
                    row |= {
                        "json_python_ms": f"{paths.python_ms:.3f}",
                        "json_database_ms": f"{paths.database_ms:.3f}",
                        **{f"bound_{name}_ms": f"{ms:.3f}" for name, ms in bound.items()},
                    }
                rows.append(row)
                lines += [
                    "",
                    f"`GET {target}`: {result.cpu_ms:.2f} ms of CPU per request "
                    f"(median of 10 batches, {result.requests} requests){counted}",
                    "",
                    "| part of the request | ms | share |",
                    "|---|---:|---:|",
                    *(
                        f"| {name} | {ms:.3f} | {ms / result.cpu_ms:.0%} |"
                        for name, ms in result.parts
                    ),
                    "",
                    "| the same time by library | ms | share |",
                    "|---|---:|---:|",
                    *(
                        f"| {name} | {ms:.3f} | {ms / result.cpu_ms:.0%} |"
                        for name, ms in result.libraries
                    ),
                ]
        text = "\n".join(lines) + "\n"
        (folder / "profile.md").write_text(text)
        stamp, commit = (
            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            run_records.git_commit(),
        )
        for row in rows:
            run_records.append_csv(
                folder / "profile.csv",
                PROFILE_COLUMNS,
                {"timestamp": stamp, "git_commit": commit, **row},
            )
        self.stdout.write(text)
        self.stdout.write(f"Wrote {folder / 'profile.md'}")

    def run_only(self, application, urls: list[str], times: int) -> None:
        """Each request ``times`` times, as production settings run it, and nothing else."""
        token = api_user_create(username="bench_profile", read_only=True)
        rates = {**settings.CRM_THROTTLE_RATES, "user": "100000000/minute"}
        with override_settings(DEBUG=False, CRM_THROTTLE_RATES=rates):
            headers = {"Authorization": f"Token {token}"}
            for asked in urls:
                target = profile.second_page(application, asked, headers)
                request = profile.wsgi_request(application, target, headers)
                for _ in range(times):
                    if request() != 200:
                        raise CommandError(f"{target} did not answer 200")
