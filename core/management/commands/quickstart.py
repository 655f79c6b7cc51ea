"""``python manage.py quickstart``: a working CRM on this machine in one command.

Migrates, generates a small dataset when the database has none, makes sure
an admin account exists (printing its password), and serves the API.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from core.models import AppUser
from core.security.api_users import api_user_create


class Command(BaseCommand):
    help = "Migrate, load a small dataset if empty, create an admin user and run the server."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--n", type=int, default=10_000, help="customers to generate if empty")
        parser.add_argument("--addrport", default="127.0.0.1:8000", help="where to serve")
        parser.add_argument(
            "--no-serve", action="store_true", help="prepare everything, but do not run the server"
        )

    def handle(self, *args, n: int, addrport: str, no_serve: bool, **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database migrated.")
        if not AppUser.objects.exists():
            call_command("generate_data", n=n, chunk=10_000, quiet=True)
            self.stdout.write(f"Generated {n:,} customers.")
        password = secrets.token_urlsafe(12)
        admin, _ = get_user_model().objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        admin.is_staff = admin.is_superuser = True
        admin.set_password(password)
        admin.save()
        # A new token each run (like the password): the one printed below.
        token = api_user_create(username="api", read_only=True, rotate=True)
        base = f"http://{addrport}"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"  API        {base}/api/users/",
                    f"  Swagger UI {base}/api/docs/",
                    f"  ReDoc      {base}/api/redoc/",
                    f"  Admin      {base}/admin/   (user: admin, password: {password})",
                    f"  API token  {token}   (read-only user 'api')",
                    f"  Database   {settings.DATABASES['default'].get('SOURCE')}",
                    "",
                    "  Try:",
                    f"  curl -H 'Authorization: Token {token}' '{base}/api/users/?last_name=smith'",
                    "",
                ]
            )
        )
        if not no_serve:
            call_command("runserver", addrport, use_reloader=False)
