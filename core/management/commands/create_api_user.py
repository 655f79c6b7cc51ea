"""``python manage.py create_api_user --username U [--read-only] [--rotate] [--lifetime-days N]``:
a user who may call the API, and a new token of theirs."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from core.security.api_users import api_user_create


class Command(BaseCommand):
    help = (
        "Create (or update) a user allowed to use the API, issue a new token and print it "
        "(only its digest is stored: this is the one time it is shown). Read-only users may "
        "list customers; others may also create, change and delete them."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", required=True)
        parser.add_argument(
            "--read-only", action="store_true", help="only the view permission on customers"
        )
        parser.add_argument(
            "--history",
            action="store_true",
            help="may also read customers' history and all data held about them",
        )
        parser.add_argument(
            "--erase", action="store_true", help="may also erase customers (the right to erasure)"
        )
        parser.add_argument(
            "--bulk",
            action="store_true",
            help="may also change many customers at once (POST /api/users/bulk-update/)",
        )
        parser.add_argument(
            "--rotate",
            action="store_true",
            help="revoke the user's earlier tokens (otherwise they keep working)",
        )
        parser.add_argument(
            "--lifetime-days",
            type=int,
            default=None,
            help="the token stops working after this many days "
            "(default: CRM_TOKEN_LIFETIME_DAYS; 0 there: never)",
        )

    def handle(
        self,
        *args,
        username: str,
        read_only: bool,
        history: bool,
        erase: bool,
        bulk: bool,
        rotate: bool,
        lifetime_days: int | None,
        **options,
    ) -> None:
        username = username.strip()
        if not username or len(username) > 150:
            raise CommandError("--username must be 1 to 150 characters")
        if lifetime_days is not None and not 1 <= lifetime_days <= 36_500:
            raise CommandError("--lifetime-days must be 1 to 36500")
        token = api_user_create(
            username=username,
            read_only=read_only,
            rotate=rotate,
            lifetime=dt.timedelta(days=lifetime_days) if lifetime_days else None,
            granted=("view_history",) * history
            + ("erase_appuser",) * erase
            + ("bulk_change_appuser",) * bulk,
        )
        self.stdout.write(token)
