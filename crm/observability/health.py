"""``/healthz`` and ``/readyz``: may this process live, and may it take traffic?

* Liveness answers from the process alone (no database): a load balancer or
  an orchestrator restarts a process that does not answer it, and a
  database outage must not make it restart every worker.
* Readiness checks what a request needs: the primary answers within
  ``CRM_READINESS_TIMEOUT_MS`` and every migration this code knows of is
  applied. Where standbys are configured it says which take reads and how far
  behind they are, from the router's own health checks (a standby down is not
  a reason to stop serving: reads fall back to the primary).

Anyone may ask whether the process is ready; only the metrics' addresses
see why (:func:`readiness`).

A readiness answer is reused for ``CRM_READINESS_CACHE_SECONDS`` (1), so
that probes, however frequent, cost at most one statement a second per
process; while one thread checks, others get the previous answer.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.migrations.loader import MigrationLoader
from django.http import HttpRequest, JsonResponse

from crm import replicas

from . import metrics
from .request_ids import client_address

logger = logging.getLogger(__name__)

#: Answers are never cached by anything between the probe and the process.
NO_STORE = {"Cache-Control": "no-store"}


def liveness(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "alive"}, headers=NO_STORE)


def readiness(request: HttpRequest) -> JsonResponse:
    """Ready or not, to anyone; the details (when it was checked, the
    database's latency, the standbys' lag, missing migrations) only to the
    addresses that may read /metrics (``CRM_METRICS_ALLOWED_IPS``): they
    tell an outsider how loaded the database is and what the deployment runs."""
    state = current_readiness()
    body = state.body
    if not metrics.address_allowed(client_address(request)):
        body = {"status": body["status"]}
    return JsonResponse(body, status=200 if state.ready else 503, headers=NO_STORE)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    body: dict[str, Any]
    checked_at: float = field(default_factory=time.monotonic)


_last: Readiness | None = None
_checking = threading.Lock()


def current_readiness() -> Readiness:
    """The last answer while it is fresh, else a new check (one at a time)."""
    global _last
    last = _last
    if (
        last is not None
        and time.monotonic() - last.checked_at < settings.CRM_READINESS_CACHE_SECONDS
    ):
        return last
    # The first check is waited for; later ones are not (the previous answer
    # stands until the check under way gives a new one).
    if not _checking.acquire(blocking=last is None):
        return last
    try:
        if _last is not last:  # another thread checked while this one waited
            return _last
        state = check_readiness()
        if last is None or state.ready != last.ready:
            logger.log(
                logging.INFO if state.ready else logging.WARNING,
                "readiness: %s %s",
                state.body["status"],
                state.body,
            )
        _last = state
        return state
    finally:
        _checking.release()


def forget_readiness() -> None:
    """Check again on the next probe (tests)."""
    global _last
    _last = None


def check_readiness() -> Readiness:
    database = check_database()
    body: dict[str, Any] = {
        "status": "ready" if database["status"] == "ok" else "not ready",
        "checked_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "database": database,
    }
    aliases = replicas.replica_aliases()
    if aliases:
        body["replicas"] = {alias: replica_state(alias) for alias in aliases}
    return Readiness(ready=database["status"] == "ok", body=body)


def check_database() -> dict[str, Any]:
    """One round trip to the primary: its migrations, under a short statement timeout."""
    started = time.perf_counter()
    try:
        with connections[replicas.PRIMARY].cursor() as cursor:
            # Two statements in one message run as one (implicit)
            # transaction, so SET LOCAL limits the SELECT and ends with it:
            # the connection's own timeout is left as it was.
            cursor.execute(
                f"SET LOCAL statement_timeout = {int(settings.CRM_READINESS_TIMEOUT_MS)}; "
                "SELECT app, name FROM django_migrations"
            )
            cursor.nextset()
            applied = set(cursor.fetchall())
    except Exception as exc:
        logger.warning("readiness: the database did not answer: %s", exc)
        return {"status": "unavailable"}
    milliseconds = round((time.perf_counter() - started) * 1000, 2)
    missing = sorted(f"{app}.{name}" for app, name in expected_migrations() - applied)
    if missing:
        return {"status": "migrations missing", "missing": missing, "ms": milliseconds}
    return {"status": "ok", "ms": milliseconds}


_expected: frozenset[tuple[str, str]] | None = None


def expected_migrations() -> frozenset[tuple[str, str]]:
    """Every migration on disk (read once per process: no database needed)."""
    global _expected
    if _expected is None:
        _expected = frozenset(MigrationLoader(None, ignore_no_migrations=True).graph.nodes)
    return _expected


def replica_state(alias: str) -> dict[str, Any]:
    health = replicas.replica_health(alias)
    state: dict[str, Any] = {"in_use": health.healthy, "lag_seconds": health.lag_seconds}
    if health.problem:
        state["problem"] = health.problem
    return state
