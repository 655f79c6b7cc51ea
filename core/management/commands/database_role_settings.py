"""``python manage.py database_role_settings --role crm_api [--apply]``: the API role's settings.

Behind a transaction-mode pooler (``DATABASE_PGBOUNCER=1``) the API's session
settings and statement timeout must be the database role's own (see
:func:`crm.postgres.config.role_settings`). This prints the ``ALTER ROLE``
statements for this database, or runs them with ``--apply`` (as a role
allowed to alter the API's: its owner or a superuser).
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection

from crm.postgres.config import role_settings_sql


class Command(BaseCommand):
    help = (
        "Print (or apply with --apply) the ALTER ROLE statements that give the API's role "
        "its session settings and statement timeout, for a transaction-mode pooler."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--role", required=True, help="the role the API connects as")
        parser.add_argument("--apply", action="store_true", help="run them, not just print")

    def handle(self, *args, role: str, apply: bool, **options) -> None:
        statements = role_settings_sql(
            role,
            connection.settings_dict["NAME"],
            statement_timeout_ms=settings.CRM_STATEMENT_TIMEOUT_MS,
            lock_timeout_ms=settings.CRM_LOCK_TIMEOUT_MS,
        )
        with connection.cursor() as cursor:
            for statement in statements:
                text = statement.as_string(cursor.connection)
                if apply:
                    cursor.execute(text)
                self.stdout.write(text + ";")
