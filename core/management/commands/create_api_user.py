"""``python manage.py create_api_user --username U [--read-only]``: a user with an API token."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.security.api_users import api_user_create


class Command(BaseCommand):
    help = (
        "Create (or update) a user allowed to use the API and print its token. "
        "Read-only users may list customers; others may also create, change and delete them."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", required=True)
        parser.add_argument(
            "--read-only", action="store_true", help="only the view permission on customers"
        )

    def handle(self, *args, username: str, read_only: bool, **options) -> None:
        username = username.strip()
        if not username or len(username) > 150:
            raise CommandError("--username must be 1 to 150 characters")
        token = api_user_create(username=username, read_only=read_only)
        self.stdout.write(token)
