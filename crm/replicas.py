"""Read replicas: which database answers a query.

``DATABASE_REPLICA_URLS`` (comma-separated PostgreSQL URLs) adds hot-standby
replicas as ``replica_1``, ``replica_2``, ... The router sends a read to a
healthy replica and everything else to the primary (``default``):

* every write, and every read inside a transaction (``atomic``), which must
  see what the transaction wrote;
* every read of a request that writes, and of the same client's requests for
  ``CRM_READ_YOUR_WRITES_SECONDS`` after a write (so that a customer just
  created is there on the next GET, before it has replicated);
* every read when no replica is healthy: one that is down, or whose replay
  lags more than ``CRM_REPLICA_MAX_LAG_SECONDS`` behind, is skipped (checked
  at most every ``CRM_REPLICA_CHECK_SECONDS`` per process), and the client
  sees no error.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.core import signing
from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

PRIMARY = "default"

#: Set for the duration of a request that must read from the primary.
_pinned = contextvars.ContextVar("crm_primary_pinned", default=False)

#: Per process: replica alias -> (checked at, healthy).
_health: dict[str, tuple[float, bool]] = {}
_turn = itertools.count()

COOKIE = "crm_primary_until"
SALT = "crm.replicas.read-your-writes"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def replica_aliases() -> list[str]:
    return [alias for alias in settings.DATABASES if alias.startswith("replica_")]


def replica_is_healthy(alias: str) -> bool:
    """Up, in recovery (a standby), and replaying within the allowed lag."""
    checked_at, healthy = _health.get(alias, (0.0, False))
    if time.monotonic() - checked_at < settings.CRM_REPLICA_CHECK_SECONDS:
        return healthy
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "SELECT pg_is_in_recovery(), "
                "coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0), "
                "pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()"
            )
            in_recovery, lag, caught_up = cursor.fetchone()
        # An idle primary writes nothing to replay: a replica that has
        # replayed all it received is current, whatever the timestamp says.
        healthy = bool(in_recovery) and (caught_up or lag <= settings.CRM_REPLICA_MAX_LAG_SECONDS)
    except DatabaseError as exc:
        logger.warning("replica %s unavailable: %s", alias, exc)
        connections[alias].close()
        healthy = False
    _health[alias] = (time.monotonic(), healthy)
    return healthy


def forget_health() -> None:
    """Check every replica again on its next use (tests, operators)."""
    _health.clear()


class ReplicaRouter:
    """Django database router: reads to a healthy replica, the rest to the primary."""

    #: Only the CRM's own data is read from replicas: a user, a session or an
    #: API token created a moment ago must be found at once.
    REPLICATED_APPS = frozenset({"core"})

    def db_for_read(self, model, **hints) -> str:
        return read_alias(model._meta.app_label)

    def db_for_write(self, model, **hints) -> str:
        return PRIMARY

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        # Replicas hold the primary's data: objects relate across them.
        return True

    def allow_migrate(self, db: str, app_label: str, **hints) -> bool:
        return db == PRIMARY


class ReadYourWritesMiddleware:
    """Pins a request to the primary when it writes, or when its client wrote recently.

    The client is remembered by a signed cookie holding the time until which
    it reads from the primary (clients that keep no cookies, such as scripts
    with a token, should re-read what they wrote from the write's response).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        writes = request.method in UNSAFE_METHODS
        token = _pinned.set(writes or self.recently_wrote(request))
        try:
            response = self.get_response(request)
        finally:
            _pinned.reset(token)
        if writes and response.status_code < 400:
            window = settings.CRM_READ_YOUR_WRITES_SECONDS
            response.set_cookie(
                COOKIE,
                signing.dumps(time.time() + window, salt=SALT),
                max_age=window,
                httponly=True,
                samesite="Lax",
                secure=request.is_secure(),
            )
        return response

    @staticmethod
    def recently_wrote(request: HttpRequest) -> bool:
        value = request.COOKIES.get(COOKIE)
        if not value:
            return False
        try:
            return float(signing.loads(value, salt=SALT)) > time.time()
        except (signing.BadSignature, TypeError, ValueError):
            return False


def read_alias(app_label: str = "core") -> str:
    """Where a read of ``app_label``'s data goes: a healthy replica when the
    app's data is replicated and the request may read from one, else the primary.

    Raw SQL reads of customers call it directly (the router's choice for a model).
    """
    if app_label not in ReplicaRouter.REPLICATED_APPS:
        return PRIMARY
    if _pinned.get() or connections[PRIMARY].in_atomic_block:
        return PRIMARY
    aliases = replica_aliases()
    if not aliases:
        return PRIMARY
    start = next(_turn)
    for i in range(len(aliases)):
        alias = aliases[(start + i) % len(aliases)]
        if replica_is_healthy(alias):
            return alias
    return PRIMARY
