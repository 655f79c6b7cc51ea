"""The API's commonest paths, run once by each process before it serves.

A fresh gunicorn worker paid, on its first requests, for what Python and the
ORM do once per process: the first page 24 ms against 3.2 ms warm, the first
``last_name=smith`` 35 ms, a token's first look-up 14 ms (at 3M customers,
in-process, with the planning sample already read; see
docs/benchmarks/README.md#cold-workers). Most of it is not the database's:
lazily built lookups and compilers, the first compilation of each shape of
page statement (:mod:`core.customers.statements`), the first AES key of the
cursors. Running those paths once here, where a worker starts (see
``core/apps.py`` and :func:`crm.observability.health.prepare_process`),
moves that cost before the worker accepts its first connection.

What runs is what a request runs, minus HTTP: the parameters validated,
the selector's query, the page statement (read: it is a few milliseconds),
the rows as JSON objects, a cursor, and the token look-up and permission
queries of the first token and its user (their ORM paths; nothing is
cached, authentication caches by the token's digest); and the
session's request limits are set (core.security.middleware), a round trip
the first request made.
"""

from __future__ import annotations

from django.core.cache import cache
from django.http import QueryDict
from django.urls import resolve, reverse

from core.customers.columns import customer_rows
from core.customers.cursors import cursor_token
from core.customers.pagination import CustomerPagination, keyset_page
from core.models import ApiToken
from core.security.middleware import session_limits_apply
from crm.observability import metrics

from .params import LIST_PARAMETERS
from .renderers import FastJSONRenderer
from .views import customers

#: The requests whose paths are run: the first page, a name filter (a known
#: value's look-up), an ordering by another index: bench_http's plans.
WARM_QUERIES = ("page_size=50", "last_name=smith&page_size=50", "ordering=-relationship__points")

_warm = False


def api_paths_warm(reason: str) -> None:
    """Run the commonest requests' paths once (``reason``: why, as the
    process's requirements are loaded, counted in the metrics when done)."""
    global _warm
    session_limits_apply()
    # The list's URL resolved (Django compiles each pattern's regex when it
    # is first tried) and its metrics' series made (their first use writes
    # the worker's metric files).
    match = resolve(reverse("customer-list"))
    metrics.request_series("GET", "/" + match.route, 200)
    # A token's first look-up in a process: the ORM's path with a row, when
    # there is one (nothing is cached: authentication caches by digest).
    token = ApiToken.objects.select_related("user").order_by("pk").first()
    if token is not None:
        token.user.get_all_permissions()
    cache.get("crm:warm-up")  # the cache's first use (core.security.authentication)
    for text in WARM_QUERIES:
        request = LIST_PARAMETERS.validate(QueryDict(text))
        query = customers(request)
        page = keyset_page(query, size=request.options.get("page_size") or 50)
        rows = customer_rows(page.rows)
        if page.rows:
            values = page.key_values(page.rows[-1], query.ordering)
            cursor_token(query.ordering, values, False, salt=CustomerPagination.cursor_salt)
        FastJSONRenderer().render({"count": page.count.value, "results": rows})
    _warm = True
    metrics.process_state_read("api_paths", reason)


def api_paths_warmed() -> bool:
    return _warm
