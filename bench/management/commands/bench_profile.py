"""``python manage.py bench_profile``: where one request's CPU time goes (see bench.profile)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings

from bench import profile, scenarios
from core import run_records
from core.security.api_users import api_user_create


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
            help="request to profile (repeatable; default: the first page, ?page_size=50)",
        )
        parser.add_argument("--requests", type=int, default=1000, help="per URL (1000)")
        parser.add_argument(
            "--output", type=Path, default=None, help="report folder (default CRM_REPORTS_DIR)"
        )

    def handle(self, *args, url, requests: int, output, **options) -> None:
        if scenarios.count_customers() < scenarios.MINIMUM_CUSTOMERS:
            raise CommandError("too few customers: run generate_data first")
        if not 20 <= requests <= 100_000:
            raise CommandError("--requests 20..100000")
        from crm.wsgi import application

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
        with limits:
            for target in url or ["/api/users/?page_size=50"]:
                result = profile.profile(
                    profile.wsgi_request(application, target, headers),
                    url=target,
                    requests=requests,
                )
                lines += [
                    "",
                    f"`GET {target}`: {result.cpu_ms:.2f} ms of CPU per request "
                    f"(median of 10 batches, {result.requests} requests)",
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
        self.stdout.write(text)
        self.stdout.write(f"Wrote {folder / 'profile.md'}")
