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
from typing import NamedTuple

from django.conf import settings
from django.core import signing
from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse

from crm.observability import metrics

logger = logging.getLogger(__name__)

PRIMARY = "default"

#: Set for the duration of a request that must read from the primary.
_pinned = contextvars.ContextVar("crm_primary_pinned", default=False)


class ReplicaHealth(NamedTuple):
    """A standby's last health check, in this process."""

    checked_at: float  # time.monotonic()
    healthy: bool  # takes reads
    lag_seconds: float | None  # None when it did not answer
    problem: str | None  # why it takes no reads


#: Per process: replica alias -> its last check.
_health: dict[str, ReplicaHealth] = {}
_turn = itertools.count()

COOKIE = "crm_primary_until"
SALT = "crm.replicas.read-your-writes"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def replica_aliases() -> list[str]:
    return [alias for alias in settings.DATABASES if alias.startswith("replica_")]


def replica_is_healthy(alias: str) -> bool:
    """Up, in recovery (a standby), and replaying within the allowed lag."""
    return replica_health(alias).healthy


def replica_health(alias: str) -> ReplicaHealth:
    """The last check of ``alias``, or a new one when it is older than
    ``CRM_REPLICA_CHECK_SECONDS`` (the router and ``/readyz`` share it)."""
    health = _health.get(alias)
    if (
        health is not None
        and time.monotonic() - health.checked_at < settings.CRM_REPLICA_CHECK_SECONDS
    ):
        return health
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
        lag = 0.0 if caught_up else max(0.0, float(lag))
        if not in_recovery:
            problem = "not a standby (promoted?)"
            # A standby promoted by a failover keeps this session: drop it, so
            # that the next check connects anew, and a multi-host URL with
            # target_session_attrs=prefer-standby finds a standby that is left.
            connections[alias].close()
        elif lag > settings.CRM_REPLICA_MAX_LAG_SECONDS:
            problem = "lagging"
        else:
            problem = None
    except DatabaseError as exc:
        logger.warning("replica %s unavailable: %s", alias, exc)
        connections[alias].close()
        lag, problem = None, "unavailable"
    health = _health[alias] = ReplicaHealth(time.monotonic(), problem is None, lag, problem)
    metrics.replica_checked(alias, health.healthy, health.lag_seconds)
    return health


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
    if _pinned.get():
        return metrics.read_routed(PRIMARY, "pinned")
    if connections[PRIMARY].in_atomic_block:
        return metrics.read_routed(PRIMARY, "transaction")
    aliases = replica_aliases()
    if not aliases:
        return metrics.read_routed(PRIMARY, "no_replicas")
    start = next(_turn)
    for i in range(len(aliases)):
        alias = aliases[(start + i) % len(aliases)]
        if replica_is_healthy(alias):
            return metrics.read_routed(alias, "replica")
    return metrics.read_routed(PRIMARY, "fallback")
