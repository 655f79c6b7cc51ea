"""``python manage.py bench_fairness``: another user's median beside a noisy user."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from bench.fairness import NOISY, QUIET, fairness_rounds
from bench.scenarios import count_customers


class Command(BaseCommand):
    help = (
        "A quiet user's median on first pages alone and beside a user running expensive "
        "requests from two connections, through nginx and gunicorn, for each "
        "CRM_USER_WORKER_MS given (0: no budget of worker time)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--share-ms",
            type=int,
            action="append",
            help="CRM_USER_WORKER_MS of a round (repeatable; default: 0 and 1000)",
        )
        parser.add_argument("--seconds", type=float, default=30, help="each measurement's length")
        parser.add_argument("--workers", type=int, default=3, help="gunicorn's workers")

    def handle(self, *args, share_ms: list[int] | None, seconds: float, workers: int, **options):
        self.stdout.write(f"{count_customers():,} customers; quiet: {QUIET}; noisy: {NOISY}")
        self.stdout.write(
            "CRM_USER_WORKER_MS | noisy user | quiet p50 (ms) | p90 | n | noisy's answers"
        )
        for r in fairness_rounds(share_ms or [0, 1000], seconds, workers):
            answers = ", ".join(f"{s}: {n}" for s, n in sorted(r.noisy_statuses.items())) or "-"
            self.stdout.write(
                f"{r.share_ms} | {'yes' if r.noisy else 'no'} | {r.p50:.1f} | {r.p90:.1f} | "
                f"{len(r.latencies)} | {answers}"
            )
