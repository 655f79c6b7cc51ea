"""``/healthz`` and ``/readyz``: may this process live, and may it take traffic?

* Liveness answers from the process alone (no database): a load balancer or
  an orchestrator restarts a process that does not answer it, and a
  database outage must not make it restart every worker.
* Readiness checks what a request needs: the primary answers within
  ``CRM_READINESS_TIMEOUT_MS``, every migration this code knows of is
  applied, and the process holds what the app registered as its
  requirements (:func:`require`: core's planning sample), read before the
  process took its first request (:func:`prepare_process`). Where standbys
  are configured it says which take reads and how far behind they are, from
  the router's own health checks (a standby down is not a reason to stop
  serving: reads fall back to the primary).

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
from collections.abc import Callable
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
    held = {name: check_requirement(name) for name in _requirements}
    ready = database["status"] == "ok" and all(s["status"] == "loaded" for s in held.values())
    body: dict[str, Any] = {
        "status": "ready" if ready else "not ready",
        "checked_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "database": database,
        **held,
    }
    aliases = replicas.replica_aliases()
    if aliases:
        body["replicas"] = {alias: replica_state(alias) for alias in aliases}
    return Readiness(ready=ready, body=body)


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


# -- what a process holds before it takes traffic ------------------------------


@dataclass(frozen=True)
class Requirement:
    """Something every request of the app may need, held by each process and
    read before the process takes its first request: the app registers it
    (:func:`require`, from its ``AppConfig.ready``), so that this project
    knows nothing of the app and the app nothing of servers.

    ``load(reason)`` reads it now and raises when it cannot; ``loaded()``
    says whether the process holds it; ``follow()``, where given, starts what
    keeps it current in a serving process (core's: a thread that hears when
    the data is replaced), once per process.
    """

    name: str
    load: Callable[[str], None]
    loaded: Callable[[], bool]
    follow: Callable[[], None] | None = None


_requirements: dict[str, Requirement] = {}
_preparing = threading.Lock()
#: Whether this process serves (serve() was called), and the requirements
#: whose ``follow`` has started.
_serving = False
_followed: set[str] = set()


def require(requirement: Requirement) -> None:
    """Register what every process must hold before it is ready."""
    _requirements[requirement.name] = requirement


def prepare_process() -> None:
    """Load every requirement this process does not hold yet.

    Called where a handler builds its middleware chain
    (:class:`crm.observability.middleware.EndpointsMiddleware`), which is
    where a server starts serving: a gunicorn worker loading ``crm.wsgi``
    before it accepts a connection, ``runserver`` before it listens, a test
    client on its first request. So no request waits for a requirement, and
    a worker that is still reading one takes no connection (its siblings
    do). One that cannot be read (the database is down) is logged and left
    to the readiness probe, which tries again and says not ready meanwhile.
    """
    with _preparing:
        for requirement in _requirements.values():
            if requirement.loaded():
                continue
            try:
                requirement.load("start")
            except Exception as exc:  # the probe says why, and tries again
                logger.warning("%s not loaded before serving: %s", requirement.name, exc)
        _follow_loaded()


def serve() -> None:
    """A serving process (gunicorn's workers, runserver; see ``crm.wsgi``):
    every requirement loaded, and each one held kept current (its ``follow``,
    once, from when it is first held: one read by the probe later too)."""
    global _serving
    _serving = True
    prepare_process()


def _follow_loaded() -> None:
    """Start the ``follow`` of every requirement held, in a serving process
    (the caller holds ``_preparing``)."""
    if not _serving:
        return
    for requirement in _requirements.values():
        if (
            requirement.follow is not None
            and requirement.name not in _followed
            and requirement.loaded()
        ):
            _followed.add(requirement.name)
            requirement.follow()


def check_requirement(name: str) -> dict[str, str]:
    """A requirement's state for /readyz; one not held is read now (the probe's retry)."""
    requirement = _requirements[name]
    if not requirement.loaded():
        try:
            with _preparing:
                if not requirement.loaded():
                    requirement.load("probe")
                _follow_loaded()
        except Exception as exc:
            logger.warning("readiness: %s not loaded: %s", name, exc)
            return {"status": "not loaded"}
    return {"status": "loaded"}
