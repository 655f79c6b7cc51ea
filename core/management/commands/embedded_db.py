"""``python manage.py embedded_db status|start|stop``: the embedded PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from crm.errors import EmbeddedPostgresError
from crm.postgres import embedded


class Command(BaseCommand):
    help = (
        "Show the status and connection string of the embedded PostgreSQL server, "
        "or start or stop it. The server is started automatically on first use."
    )
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "action", choices=["status", "start", "stop"], nargs="?", default="status"
        )

    def handle(self, *args, action: str, **options) -> None:
        database = settings.DATABASES["default"]
        data_dir = database.get("EMBEDDED_DATA_DIR")
        if not data_dir:
            raise CommandError(
                "DATABASE_URL is set, so this project does not use the embedded PostgreSQL"
            )
        data_dir = Path(data_dir)
        try:
            if action == "start":
                embedded.ensure_running(data_dir, database["NAME"])
            elif action == "stop":
                stopped = embedded.stop(data_dir)
                self.stdout.write("stopped" if stopped else "not running")
                return
        except EmbeddedPostgresError as exc:
            raise CommandError(str(exc)) from exc
        server = embedded.status(data_dir)
        self.stdout.write(f"data folder: {data_dir}")
        if not server.running:
            self.stdout.write("status:      stopped")
            return
        self.stdout.write("status:      running")
        self.stdout.write(f"pid:         {server.pid}")
        dsn = server.conninfo(database["NAME"])
        self.stdout.write(f"dsn:         {dsn}")
        self.stdout.write(f"psql:        {embedded.binary('psql')} '{dsn}'")
