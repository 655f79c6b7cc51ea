"""Metrics in one process: what each request and event adds, and who may read them.

Several gunicorn workers summed into one /metrics: test_gunicorn_metrics.py.
"""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from core.dataset.loader import customer_dataset_replace
from core.tests.clients import api_client
from crm import env
from crm.errors import ConfigurationError
from crm.observability import metrics


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """How much a sample grew while the block ran."""

    def __init__(self, name: str, **labels: str) -> None:
        self.name, self.labels = name, labels

    def __enter__(self) -> Delta:
        self.before = value(self.name, **self.labels)
        return self

    def __exit__(self, *exc) -> None:
        self.grown = value(self.name, **self.labels) - self.before


@pytest.fixture
def customers(db):
    customer_dataset_replace(n=60, chunk=60, seed=5)


def test_requests_are_counted_by_url_pattern_not_by_path(customers):
    client = api_client()
    detail = "/api/users/<int:pk>/"
    with (
        Delta(
            "crm_http_request_duration_seconds_count", method="GET", route=detail, status="200"
        ) as found,
        Delta(
            "crm_http_request_duration_seconds_count", method="GET", route=detail, status="404"
        ) as missing,
    ):
        for pk in (1, 2, 3):
            assert client.get(f"/api/users/{pk}/").status_code == 200
        assert client.get("/api/users/999999/").status_code == 404
    assert (found.grown, missing.grown) == (3, 1)
    assert value("crm_http_request_duration_seconds_count", route="/api/users/1/") == 0


def test_unrouted_paths_share_one_series(db):
    with Delta(
        "crm_http_request_duration_seconds_count", method="GET", route="unmatched", status="404"
    ) as unmatched:
        for path in ("/nope/", "/wp-login.php", "/api/users/x/y/"):
            Client().get(path)
    assert unmatched.grown == 3


def test_unknown_methods_share_one_series(db):
    before = value("crm_http_request_duration_seconds_count", method="other", route="/api/users/")
    for method in ("BREW", "PROPFIND", "X" * 50):
        response = Client().generic(method, "/api/users/")
    labels = {"method": "other", "route": "/api/users/", "status": str(response.status_code)}
    assert value("crm_http_request_duration_seconds_count", **labels) - before == 3
    assert value("crm_http_request_duration_seconds_count", method="BREW") == 0


def test_database_time_and_queries_per_request_are_recorded(customers):
    client = api_client()
    client.get("/api/users/")  # token cached, statement timeout set
    with (
        Delta("crm_http_request_queries_sum", route="/api/users/") as queries,
        Delta("crm_http_request_database_seconds_sum", route="/api/users/") as database,
        Delta(
            "crm_http_request_duration_seconds_sum", method="GET", route="/api/users/", status="200"
        ) as duration,
        CaptureQueriesContext(connection) as captured,
    ):
        client.get("/api/users/?page_size=5")
    assert queries.grown == len(captured) >= 1
    assert 0 < database.grown < duration.grown


def test_duration_buckets_are_fine_where_this_apis_requests_are():
    """Most requests take 1 to 20 ms: at least eight bucket bounds there."""
    bounds = [b for b in metrics.DURATION_BUCKETS if 0.001 <= b <= 0.02]
    assert len(bounds) >= 8


def test_throttle_rejections_are_counted_per_limit(customers, settings):
    settings.CRM_THROTTLE_RATES = {"anon": "2/minute", "user": "2/minute"}
    client = api_client("limited")
    with Delta("crm_throttle_rejections_total", scope="user") as user:
        assert [client.get("/api/users/").status_code for _ in range(4)] == [200, 200, 429, 429]
    assert user.grown == 2
    settings.CRM_THROTTLE_RATES = {"anon": "2/minute", "user": None}
    anonymous = Client(REMOTE_ADDR="203.0.113.44")
    with Delta("crm_throttle_rejections_total", scope="anon") as anon:
        assert [anonymous.get("/api/users/").status_code for _ in range(3)] == [401, 401, 429]
    assert anon.grown == 1


@pytest.mark.django_db(transaction=True)
def test_statement_timeouts_are_counted(settings):
    customer_dataset_replace(n=20, chunk=20)
    settings.CRM_STATEMENT_TIMEOUT_MS = 200
    client = api_client()
    client.get("/api/users/")
    params = connection.get_connection_params()
    blocker = psycopg.connect(
        host=params["host"], port=params.get("port"), user=params["user"], dbname=params["dbname"]
    )
    try:
        blocker.execute("LOCK TABLE core_customer_list IN ACCESS EXCLUSIVE MODE")
        with Delta("crm_statement_timeouts_total") as timeouts:
            assert client.get("/api/users/?count=none").status_code == 503
    finally:
        blocker.rollback()
        blocker.close()
    assert timeouts.grown == 1


@pytest.mark.django_db(transaction=True)
def test_read_routing_decisions_are_counted_with_their_reason():
    customer_dataset_replace(n=20, chunk=20)
    client = api_client("writer", read_only=False)
    with (
        Delta("crm_database_read_routing_total", database="default", reason="no_replicas") as free,
        Delta("crm_database_read_routing_total", database="default", reason="pinned") as pinned,
    ):
        client.get("/api/users/")
        client.delete("/api/users/1/")
    assert free.grown >= 1
    assert pinned.grown >= 1, "a write's reads stay on the primary"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_exported_rows_are_counted(fmt):
    customer_dataset_replace(n=2500, chunk=2500)
    with Delta("crm_export_rows_total", format=fmt) as rows:
        response = api_client().get(f"/api/users/export/?format={fmt}")
        body = b"".join(response.streaming_content)
    assert body.count(b"\n") == 2500 + (fmt == "csv")
    assert rows.grown == 2500


def test_rows_of_an_export_abandoned_midway_are_counted():
    blocks = metrics.export_rows(iter([b"h\n"] + [b"r\n"] * 2500), "csv", header=True)
    with Delta("crm_export_rows_total", format="csv") as rows:
        for _ in range(1500):
            next(blocks)
        blocks.close()  # the client went away
    assert rows.grown == 1499


def test_metrics_are_served_to_loopback_in_prometheus_format(db):
    Client().get("/healthz")
    response = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {
        "crm_http_request_duration_seconds",
        "crm_http_request_database_seconds",
        "crm_http_request_queries",
        "crm_http_requests_in_progress",
        "crm_throttle_rejections",
        "crm_statement_timeouts",
        "crm_database_read_routing",
        "crm_export_rows",
        "process_resident_memory_bytes",
        "process_cpu_seconds",
    } <= names


@pytest.mark.parametrize(
    ("allowed", "num_proxies", "remote", "forwarded", "status"),
    [
        (None, None, "127.0.0.1", None, 200),
        (None, None, "::1", None, 200),
        (None, None, "10.0.0.8", None, 403),
        (None, None, "127.0.0.1", "203.0.113.9", 403),  # through an undeclared proxy
        (None, 1, "127.0.0.1", "203.0.113.9", 403),  # a public client via the local proxy
        (None, 1, "127.0.0.1", None, 200),  # a scrape straight to the worker
        ("10.0.0.0/8", None, "10.0.0.8", None, 200),
        ("10.0.0.0/8", None, "127.0.0.1", None, 403),
        ("10.0.0.0/8,127.0.0.1", 1, "127.0.0.1", "10.1.2.3", 200),
    ],
)
def test_metrics_are_served_to_the_allowed_addresses_only(
    settings, allowed, num_proxies, remote, forwarded, status
):
    if allowed:
        settings.CRM_METRICS_ALLOWED_IPS = env.ip_networks("X", [], {"X": allowed})
    settings.CRM_NUM_PROXIES = num_proxies
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    response = Client(REMOTE_ADDR=remote).get("/metrics", **extra)
    assert response.status_code == status
    if status == 403:
        assert b"crm_" not in response.content


def test_a_malformed_allowed_address_stops_the_process_naming_the_variable():
    with pytest.raises(ConfigurationError, match="CRM_METRICS_ALLOWED_IPS"):
        env.ip_networks("CRM_METRICS_ALLOWED_IPS", [], {"CRM_METRICS_ALLOWED_IPS": "10.0.0.0/33"})
