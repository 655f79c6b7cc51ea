"""Per-request limits on the database session."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.db.backends.signals import connection_created
from django.http import HttpRequest, HttpResponse


class StatementTimeoutMiddleware:
    """Every statement a request runs is cancelled after ``CRM_STATEMENT_TIMEOUT_MS``.

    The limit is set on the session once per database connection (connections
    persist across requests), so it costs no query per request. It applies to
    requests only: ``generate_data`` and ``migrate`` run outside this
    middleware and are not cut short. The API turns a cancelled query into a
    503 (see core.security.exceptions).

    Behind a transaction-mode pooler (``DATABASE_PGBOUNCER``) a session
    setting would stay on a server connection that other clients get next:
    the limit is the API role's own there (``manage.py database_role_settings``).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        connection_created.connect(self._forget, weak=False)

    @staticmethod
    def _forget(sender, connection, **kwargs) -> None:
        connection.crm_statement_timeout = None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if settings.CRM_DATABASE_POOLER:
            return self.get_response(request)
        timeout = settings.CRM_STATEMENT_TIMEOUT_MS
        if getattr(connection, "crm_statement_timeout", None) != timeout:
            try:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT set_config('statement_timeout', %s, false)", [str(timeout)]
                    )
                connection.crm_statement_timeout = timeout
            except Exception:
                # The database is down: let the view fail the usual way (503).
                connection.crm_statement_timeout = None
        return self.get_response(request)
