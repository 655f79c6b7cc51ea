"""Django's PostgreSQL backend, plus the embedded server and clear connection errors."""

from __future__ import annotations

import contextlib
import logging
import select
from pathlib import Path

from django.db.backends.postgresql import base
from django.db.utils import DatabaseErrorWrapper
from django.utils.functional import cached_property

from crm.errors import DatabaseUnavailable

from . import embedded, failover

logger = logging.getLogger(__name__)

# Data folders whose server this process has already made sure of; later
# connections go straight to the socket.
_started: set[Path] = set()


class FailoverErrorWrapper(DatabaseErrorWrapper):
    """Django's translation of psycopg's errors, which also notes on the
    connection an error that means its server is gone or no longer the
    primary (:func:`crm.postgres.failover.lost_server`)."""

    def __exit__(self, exc_type, exc_value, traceback):
        if exc_value is not None and failover.lost_server(exc_value):
            self.wrapper.crm_lost_server = True
        return super().__exit__(exc_type, exc_value, traceback)


class DatabaseWrapper(base.DatabaseWrapper):
    """Settings keys beyond Django's own:

    ``EMBEDDED_DATA_DIR``
        Run against the embedded server of this data folder, started on the
        first connection (``HOST`` and ``PORT`` come from its ``postmaster.pid``).
    ``SOURCE``
        Where the connection settings came from ("DATABASE_URL", ...), named
        in the error when a connection fails.
    """

    #: Set when a statement failed in a way that says this connection's server
    #: is gone or no longer the primary: the connection is then discarded when
    #: the request ends (see close_if_unusable_or_obsolete).
    crm_lost_server = False

    @cached_property
    def wrap_database_errors(self) -> FailoverErrorWrapper:
        return FailoverErrorWrapper(self)

    def close_if_unusable_or_obsolete(self) -> None:
        """Django's rule (after an error, a connection that still answers
        ``SELECT 1`` is kept), except after an error of
        :mod:`crm.postgres.failover`: a demoted primary answers ``SELECT 1``
        and refuses every write, so such a connection is discarded, and with
        psycopg's pool so is every idle connection the pool holds (they lead
        to the same server). The next request connects through the multi-host
        ``DATABASE_URL`` and finds the new primary."""
        if self.connection is not None and self.crm_lost_server:
            self.discard_connection()
            return
        super().close_if_unusable_or_obsolete()

    def discard_connection(self) -> None:
        """Close this connection for good, never returning it to a pool."""
        self.crm_lost_server = False
        logger.warning(
            "discarding the connection to %s: its server is gone or no longer the primary",
            self.alias,
        )
        pool = self.pool
        if pool is not None and self.connection is not None:
            # psycopg's pool replaces a connection that comes back closed, and
            # keeps one that comes back open, whatever server it leads to.
            with contextlib.suppress(Exception):
                self.connection.close()
            with contextlib.suppress(Exception):
                pool.drain()
        with contextlib.suppress(Exception):
            self.close()
        # Closed in any case: a pool's putconn can fail after the close above.
        self.connection = None

    def child_environment(self) -> dict[str, str]:
        """Environment variables that make a child process of this project
        (``manage.py``, gunicorn) use this very database.

        The child reads the same ``DATABASE_URL`` or embedded data folder from
        the environment it inherits, but may otherwise pick another database
        name: under pytest this connection is to the ``test_`` database, and
        on an external server the project's own database may not even exist.
        """
        env = {"DATABASE_NAME": self.settings_dict["NAME"]}
        if self.settings_dict.get("EMBEDDED_DATA_DIR"):
            env["CRM_PGDATA"] = self.settings_dict["EMBEDDED_DATA_DIR"]
        return env

    def close_if_health_check_failed(self) -> None:
        """Django's health check, without its round trip when the socket says all is well.

        With ``CONN_HEALTH_CHECKS`` Django runs ``SELECT 1`` before the first
        query of every request: a round trip, and a statement for the server
        to parse, on every request (a quarter of the first page's database
        work). A session the server ended (a restart, a failover, a killed
        backend) leaves its socket readable, its last message and the end of
        the stream waiting; a healthy idle session has nothing to read. So a
        socket with nothing to read passes without a query, and anything
        else gets Django's real check. (After a failed query Django decides
        with ``is_usable()``, which keeps its round trip.)
        """
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and not self.connection.closed
            and not self._socket_has_news()
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def _socket_has_news(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def get_connection_params(self) -> dict:
        params = super().get_connection_params()
        data_dir = self.settings_dict.get("EMBEDDED_DATA_DIR")
        if data_dir:
            server = self._embedded_server(Path(data_dir))
            params["host"] = str(server.socket_dir)
            params["port"] = server.port
        return params

    def _embedded_server(self, data_dir: Path) -> embedded.ServerStatus:
        if data_dir not in _started:
            server = embedded.ensure_running(data_dir, self.settings_dict["NAME"] or "postgres")
            _started.add(data_dir)
            return server
        server = embedded.status(data_dir)
        if not server.running:
            # Stopped since (``embedded_db stop``, a test): the connection
            # fails below with a clear message rather than restarting a
            # server that someone meant to stop.
            raise DatabaseUnavailable(
                f"the embedded PostgreSQL in {data_dir} is not running; "
                "start it with `python manage.py embedded_db start`"
            )
        return server

    def get_new_connection(self, conn_params: dict):
        try:
            new = super().get_new_connection(conn_params)
        except self.Database.OperationalError as exc:
            source = self.settings_dict.get("SOURCE", "settings.DATABASES")
            host = conn_params.get("host") or "localhost"
            port = conn_params.get("port") or 5432
            # libpq's first line says what failed ("Connection refused",
            # "password authentication failed"); the rest is advice.
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {host}:{port} "
                f"(database {conn_params.get('dbname')!r}, from {source}): {reason}"
            ) from exc
        # A failed attempt before this one noted a lost server: this
        # connection is new, through the multi-host string, and is kept.
        self.crm_lost_server = False
        return new
