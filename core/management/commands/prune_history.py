"""``python manage.py prune_history [--before DATE]``: delete old events of the history."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core.history.services import PRUNE_BATCH, history_prune


class Command(BaseCommand):
    help = (
        "Delete the history's events older than --before (a date, UTC midnight) or than "
        "CRM_HISTORY_DAYS days, in batches, each its own transaction: stopped at any point, "
        "run it again to go on. Events that record an erasure are kept."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--before", type=dt.date.fromisoformat, default=None, help="YYYY-MM-DD")
        parser.add_argument("--batch", type=int, default=PRUNE_BATCH, help="events per transaction")

    def handle(self, *args, before: dt.date | None, batch: int, **options) -> None:
        if batch < 1:
            raise CommandError("--batch must be at least 1")
        if before is not None:
            cutoff = dt.datetime.combine(before, dt.time(), dt.UTC)
        elif settings.CRM_HISTORY_DAYS:
            cutoff = timezone.now() - dt.timedelta(days=settings.CRM_HISTORY_DAYS)
        else:
            raise CommandError("give --before YYYY-MM-DD, or set CRM_HISTORY_DAYS")
        self.stdout.write(f"Deleting events before {cutoff:%Y-%m-%d %H:%M} UTC …")

        def progress(removed: int) -> None:
            self.stdout.write(f"  {removed:,} deleted")

        removed = history_prune(cutoff, batch=batch, progress=progress)
        self.stdout.write(f"Deleted {removed:,} events.")
