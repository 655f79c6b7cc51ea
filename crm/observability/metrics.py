"""Prometheus metrics: what each request cost, and the events an operator alerts on.

Built on the official ``prometheus-client``. django-prometheus was the
alternative; it was not taken because it labels requests by view name rather
than URL pattern, updates a dozen series per request (by method, by
transport, by view, body sizes, ...) where this needs three, and counts
queries by wrapping the database backend in its own, which this project's
backend (``crm.postgres``, with the embedded server) would have to give up.

Under gunicorn every worker writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode, set up by
:mod:`crm.observability.multiprocess` from ``crm/gunicorn_conf.py``), and
``/metrics``, whichever worker answers it, sums them all. In one process
(``runserver``, the tests) the values stay in memory.

Names follow Prometheus' conventions (seconds, ``_total`` for counters);
labels have few values: a route is the URL *pattern* (``/api/users/<int:pk>/``),
never the path a client sent.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric

from .request_ids import client_address

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Every process started in that environment writes its files there (a
    # manage.py command too, which may run before gunicorn has made it).
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

#: Most requests take 1 to 20 ms, so the buckets are finest there; the rest
#: reach the statement timeout (2 s) and gunicorn's (30 s).
DURATION_BUCKETS = (
    0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
#: A page's queries take 0.1 to 10 ms together.
DATABASE_BUCKETS = (
    0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
#: A list page runs two to four queries; a write about ten.
QUERY_BUCKETS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100)

REQUEST_DURATION = Histogram(
    "crm_http_request_duration_seconds",
    "Time from the request entering Django to its response leaving it (for a streamed "
    "export: until its first row). _count is the number of requests.",
    ("method", "route", "status"),
    buckets=DURATION_BUCKETS,
)
REQUEST_DATABASE = Histogram(
    "crm_http_request_database_seconds",
    "Time a request spent waiting for its SQL statements.",
    ("route",),
    buckets=DATABASE_BUCKETS,
)
REQUEST_QUERIES = Histogram(
    "crm_http_request_queries",
    "SQL statements a request ran.",
    ("route",),
    buckets=QUERY_BUCKETS,
)
REQUESTS_IN_PROGRESS = Gauge(
    "crm_http_requests_in_progress",
    "Requests being served, over all live workers: as many as there are workers (sync) means "
    "every worker is busy and new requests queue.",
    multiprocess_mode="livesum",
)
THROTTLE_REJECTIONS = Counter(
    "crm_throttle_rejections",
    "Requests refused by a limit (429), per limit: user, anon, login, export or concurrency.",
    ("scope",),
)
STATEMENT_TIMEOUTS = Counter(
    "crm_statement_timeouts",
    "SQL statements of a request cancelled by the statement timeout (the request gets a 503).",
)
READ_ROUTING = Counter(
    "crm_database_read_routing",
    "Where reads of customers went: database is 'default' (the primary) or a standby's alias; "
    "reason is replica, pinned (read-your-writes), transaction, no_replicas or fallback "
    "(no standby healthy).",
    ("database", "reason"),
)
REPLICA_LAG = Gauge(
    "crm_replica_lag_seconds",
    "How far a standby's replay was behind at its last health check (0 when it had "
    "replayed all it received; NaN when it did not answer).",
    ("database",),
    multiprocess_mode="livemostrecent",
)
REPLICA_IN_USE = Gauge(
    "crm_replica_in_use",
    "1 when a standby passed its last health check and takes reads, else 0.",
    ("database",),
    multiprocess_mode="livemostrecent",
)
EXPORT_ROWS = Counter(
    "crm_export_rows",
    "Customers streamed by the export, per format.",
    ("format",),
)
PREPARED_READS = Counter(
    "crm_process_state_reads",
    "Reads of what a process holds for its requests (the app's planning sample), per "
    "thing and reason: start (before the process took traffic), replaced (the data was "
    "replaced), refresh (its age), probe (a readiness probe's retry) or request (a request "
    "had to wait for it: none should).",
    ("name", "reason"),
)

#: Methods a client may send are unbounded; anything else counts as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: Requests that matched no URL pattern (404s, and answers given before
#: routing, such as a refused host): one series, whatever the path.
UNMATCHED = "unmatched"

# Label lookups cost more than the observations themselves (validation, a
# lock): each label combination's series are looked up once per process.
_request_series: dict[tuple[str, str, int], tuple[Histogram, Histogram, Histogram]] = {}
_routing_series: dict[tuple[str, str], Counter] = {}


def request_series(method: str, route: str, status: int) -> tuple[Histogram, Histogram, Histogram]:
    """A request's series, made on first use: under gunicorn each is a value
    in the worker's files, whose first use writes them (a worker's warm-up
    makes its commonest requests', core.api.warm_up)."""
    if method not in METHODS:
        method = "other"
    key = (method, route, status)
    series = _request_series.get(key)
    if series is None:
        series = _request_series[key] = (
            REQUEST_DURATION.labels(method, route, str(status)),
            REQUEST_DATABASE.labels(route),
            REQUEST_QUERIES.labels(route),
        )
    return series


def observe_request(
    method: str, route: str, status: int, seconds: float, db_seconds: float, queries: int
) -> None:
    """Record one request."""
    series = request_series(method, route, status)
    series[0].observe(seconds)
    series[1].observe(db_seconds)
    series[2].observe(queries)


def read_routed(alias: str, reason: str) -> str:
    """Count a read's routing decision; return the alias, so that the router
    can ``return read_routed(alias, reason)``."""
    counter = _routing_series.get((alias, reason))
    if counter is None:
        counter = _routing_series[(alias, reason)] = READ_ROUTING.labels(alias, reason)
    counter.inc()
    return alias


def replica_checked(alias: str, healthy: bool, lag_seconds: float | None) -> None:
    """Publish a standby's health check."""
    REPLICA_IN_USE.labels(alias).set(1 if healthy else 0)
    # Unknown (the standby did not answer) rather than its last value.
    REPLICA_LAG.labels(alias).set(math.nan if lag_seconds is None else lag_seconds)


def process_state_read(name: str, reason: str) -> None:
    """Count a read of something a process holds (see ``PREPARED_READS``)."""
    PREPARED_READS.labels(name, reason).inc()


def throttle_rejected(scope: str) -> None:
    """Count a limit's refusal (a 429, or a refused admin sign-in)."""
    THROTTLE_REJECTIONS.labels(scope).inc()


#: Rows are counted in batches: a counter update per row would cost the
#: export a few percent of its speed.
EXPORT_BATCH = 1000


def export_rows(blocks: Iterable[bytes], fmt: str, *, header: bool) -> Iterator[bytes]:
    """Pass an export's blocks through (one per row, plus the CSV header),
    counting the rows as they stream, also when the client goes away midway."""
    counter = EXPORT_ROWS.labels(fmt)
    pending = -1 if header else 0
    try:
        for block in blocks:
            pending += 1
            if pending == EXPORT_BATCH:
                counter.inc(pending)
                pending = 0
            yield block
    finally:
        if pending > 0:
            counter.inc(pending)


# -- /metrics -------------------------------------------------------------------


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The metrics in Prometheus' text format, for the addresses in
    ``CRM_METRICS_ALLOWED_IPS`` only (see :func:`~.request_ids.client_address`)."""
    if not address_allowed(client_address(request)):
        return JsonResponse(
            {"detail": "Metrics are served to the addresses in CRM_METRICS_ALLOWED_IPS only."},
            status=403,
        )
    response = HttpResponse(
        generate_latest(exposition_registry()), content_type=CONTENT_TYPE_LATEST
    )
    response["Cache-Control"] = "no-store"
    return response


def address_allowed(address: str | None) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in network for network in settings.CRM_METRICS_ALLOWED_IPS)


def exposition_registry() -> CollectorRegistry:
    """What ``/metrics`` shows: every process's files in multiprocess mode,
    this process's own registry otherwise."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    registry.register(WorkerProcessCollector(Path(directory)))
    PlatformCollector(registry=registry)
    return registry


#: Metric files are named ``<kind>_<pid>.db``.
METRIC_FILE = re.compile(r"_(\d+)\.db$")


class WorkerProcessCollector:
    """``process_*`` metrics (CPU, memory, open files) of every live worker, with a ``pid`` label.

    prometheus-client's multiprocess mode drops them (its process collector
    sees only the process that answers the scrape); here the answering worker
    reads ``/proc`` for each of its siblings (same parent: the gunicorn
    master) that has metric files, and for itself.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def pids(self) -> list[int]:
        own, parent = os.getpid(), os.getppid()
        pids = {own}
        for path in self.directory.iterdir():
            match = METRIC_FILE.search(path.name)
            if match and parent_pid(int(match.group(1))) == parent:
                pids.add(int(match.group(1)))
        return sorted(pids)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for pid in self.pids():
            collector = ProcessCollector(pid=lambda pid=pid: pid, registry=None)
            for family in collector.collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        yield from families.values()


def parent_pid(pid: int) -> int | None:
    """A live process's parent, from ``/proc/<pid>/stat``; None once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # "pid (command) state ppid ...": the command may hold spaces and parentheses.
    return int(stat[stat.rindex(b")") + 2 :].split()[1])
