"""The two middleware that put this package on every request (first in ``MIDDLEWARE``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter

from django.conf import settings
from django.core.signals import request_finished
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse

from . import health, logs, metrics
from .context import RequestContext, bind, unbind
from .request_ids import HEADER, request_id
from .timing import record_query, server_timing

#: This package's entries in ``settings.MIDDLEWARE``: leave them out, and
#: nothing of it runs per request (bench_list's ``uninstrumented`` variant).
INSTRUMENTATION = (
    "crm.observability.middleware.EndpointsMiddleware",
    "crm.observability.middleware.RequestObservabilityMiddleware",
)


class EndpointsMiddleware:
    """Serves ``/healthz``, ``/readyz`` and ``/metrics`` ahead of everything else.

    They answer before the host check (an orchestrator probes a pod by its IP
    address), the HTTPS redirect (a load balancer probes over plain HTTP),
    sessions, authentication, rate limits and the statement-timeout
    middleware (which runs a query on a new connection: liveness must run
    none), and they are left out of the request metrics and log, which they
    would otherwise fill with a line a second per probe.
    """

    #: Path -> view. Each also answers with a trailing slash.
    endpoints: dict[str, Callable[[HttpRequest], HttpResponse]] = {
        "/healthz": health.liveness,
        "/readyz": health.readiness,
        "/metrics": metrics.metrics_view,
    }

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.routes = {**self.endpoints, **{f"{p}/": v for p, v in self.endpoints.items()}}
        # A handler builds its chain once, before its first request: what
        # the app's requests need is read now (see health.prepare_process).
        health.prepare_process()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = self.routes.get(request.path_info)
        if view is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return JsonResponse(
                {"detail": f'Method "{request.method}" not allowed.'},
                status=405,
                headers={"Allow": "GET, HEAD"},
            )
        return view(request)


class RequestObservabilityMiddleware:
    """Per request: an id, its time and its database time, metrics, a log line.

    Built to cost little (a first page takes a few milliseconds): one pair of
    ``perf_counter`` calls, an execute wrapper on each database connection,
    three histogram observations and a gauge, two headers and, when the
    request log is on, one line.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.aliases = tuple(settings.DATABASES)
        self.server_timing = settings.CRM_SERVER_TIMING
        request_finished.connect(unbind, weak=False, dispatch_uid="crm.observability.unbind")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = perf_counter()
        context = RequestContext(request_id(request), request)
        bind(context)  # until the response is closed (see context.unbind)
        wrapped = [connections[alias].execute_wrappers for alias in self.aliases]
        for wrappers in wrapped:
            wrappers.append(record_query)
        metrics.REQUESTS_IN_PROGRESS.inc()
        try:
            response = self.get_response(request)
        finally:
            metrics.REQUESTS_IN_PROGRESS.dec()
            for wrappers in wrapped:
                wrappers.remove(record_query)
        seconds = perf_counter() - started
        match = request.resolver_match
        route = "/" + match.route if match is not None else metrics.UNMATCHED
        status = response.status_code
        response[HEADER] = context.id
        if self.server_timing:
            response["Server-Timing"] = server_timing(seconds, context.db_seconds, context.queries)
        metrics.observe_request(
            request.method, route, status, seconds, context.db_seconds, context.queries
        )
        if logs.request_logger.isEnabledFor(logging.INFO):
            logs.log_request(context, status, seconds, route)
        return response
