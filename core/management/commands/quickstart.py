"""``python manage.py quickstart``: a working CRM on this machine in one command.

Migrates, generates a small dataset when the database has none, makes sure an
admin account and two API users exist (printing the admin's password and the
tokens), and serves the API with Django's development server.

The development server runs a thread per request, and Django keeps a
database connection per thread: with the persistent connections the rest of
the project uses (``DATABASE_CONN_MAX_AGE``), every thread that ever served a
request would leave its connection open, and 40 concurrent clients exhaust
PostgreSQL's ``max_connections``. So the server runs with psycopg's pool
instead (``DATABASE_POOL=1``, at most ``DATABASE_POOL_MAX`` connections, 4 by
default here): threads borrow a connection for one request and give it back.
A pool rather than ``DATABASE_CONN_MAX_AGE=0``: without persistent
connections each request would open its own, so 200 concurrent clients would
still open 200. Everything else (tests, benchmarks, gunicorn's one-thread
workers) keeps persistent connections, which are the fastest for one thread.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.core.management.commands.runserver import naiveip_re

from core.models import AppUser
from core.security.api_users import api_user_create

#: The development server's database settings, unless the environment says otherwise.
SERVER_ENVIRONMENT = {"DATABASE_POOL": "1", "DATABASE_POOL_MAX": "4"}


class Command(BaseCommand):
    help = "Migrate, load a small dataset if empty, create an admin user and run the server."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--n", type=int, default=10_000, help="customers to generate if empty")
        parser.add_argument(
            "--addrport",
            default="127.0.0.1:8000",
            help="where to serve, ip:port or port (make run PORT=8001 HOST=0.0.0.0)",
        )
        parser.add_argument(
            "--no-serve", action="store_true", help="prepare everything, but do not run the server"
        )

    def handle(self, *args, n: int, addrport: str, no_serve: bool, **options) -> None:
        host, port = parse_addrport(addrport)
        if not no_serve:
            # Before minutes of work, not after: a taken port is the usual snag.
            port_check(host, port)
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
        # New tokens each run (like the password): the ones printed below.
        reader = api_user_create(username="api", read_only=True, rotate=True)
        writer = api_user_create(
            username="api-writer",
            read_only=False,
            rotate=True,
            granted=("view_history", "erase_appuser", "bulk_change_appuser"),
        )
        served = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        base = f"http://{served}"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"  API        {base}/api/users/",
                    f"  Swagger UI {base}/api/docs/   (paste a token there, or sign in as admin)",
                    f"  ReDoc      {base}/api/redoc/",
                    f"  Admin      {base}/admin/   (user: admin, password: {password})",
                    f"  API token  {reader}   (read-only user 'api')",
                    f"  Write token {writer}   (user 'api-writer': may also write, "
                    "change many, read history, erase)",
                    f"  Database   {settings.DATABASES['default'].get('SOURCE')}",
                    "",
                    "  In another terminal, set these, then paste any README example:",
                    f"  T={reader} W={writer}",
                    f"  curl -H \"Authorization: Token $T\" '{base}/api/users/?last_name=smith'",
                    "",
                ]
            )
        )
        if not no_serve:
            self.serve(served)

    def serve(self, addrport: str) -> None:
        """Replace this process with ``runserver``, its database pooled (see the module)."""
        self.stdout.flush()
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        environment = {**SERVER_ENVIRONMENT, **os.environ}
        os.execve(
            sys.executable,
            [sys.executable, manage, "runserver", "--noreload", addrport],
            environment,
        )


def parse_addrport(addrport: str) -> tuple[str, int]:
    """``ip:port``, ``[ipv6]:port`` or ``port``, as runserver reads them."""
    match = naiveip_re.match(addrport)
    if match is None or not match["port"].isdigit() or not 0 < int(match["port"]) < 65536:
        raise CommandError(f"--addrport {addrport!r} is not ip:port or a port number (1-65535)")
    host = match["addr"] or "127.0.0.1"
    return host.strip("[]"), int(match["port"])


def port_check(host: str, port: int) -> None:
    """Refuse a taken port with advice, where runserver would only say it is in use."""
    try:
        bind_probe(host, port)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise CommandError(f"cannot serve on {host}:{port}: {exc.strerror}") from None
        free = next_free_port(host, port)
        raise CommandError(
            f"port {port} on {host} is already in use (another `make run`? "
            f"`ss -ltnp 'sport = :{port}'` shows which process). Stop it, or serve on "
            f"another port: make run PORT={free}   (or: python manage.py quickstart "
            f"--addrport {host}:{free})"
        ) from None


def bind_probe(host: str, port: int) -> None:
    """Bind ``host:port`` and let it go again; raise OSError if that is impossible."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As runserver binds: a port in TIME_WAIT is free to reuse.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def next_free_port(host: str, port: int) -> int:
    """The first port above ``port`` that is free now (a suggestion, not a reservation)."""
    for candidate in range(port + 1, min(port + 100, 65536)):
        try:
            bind_probe(host, candidate)
        except OSError:
            continue
        return candidate
    return port + 1
