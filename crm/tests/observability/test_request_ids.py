"""Request ids: made here unless a trusted proxy sent one, returned, and on every log line."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client, RequestFactory

from core.tests.clients import api_client
from crm.observability.request_ids import client_address, request_id

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.mark.django_db
def test_each_response_carries_a_new_id():
    client = Client()
    ids = [client.get("/api/users/")["X-Request-ID"] for _ in range(3)]
    assert all(GENERATED.fullmatch(i) for i in ids)
    assert len(set(ids)) == 3
    assert GENERATED.fullmatch(client.get("/no/such/page/")["X-Request-ID"])


@pytest.mark.parametrize(
    ("num_proxies", "sent", "kept"),
    [
        (None, "edge-4f1c2a", False),  # no proxy declared: a client's claim
        (0, "edge-4f1c2a", False),
        (1, "edge-4f1c2a", True),
        (2, "0f3c9a6e-8a5b-4c1e-9d2f-3b7a1c5e9f00", True),
        (1, "Root=1-67891233-abcdef012345678912345678", True),
        (1, "", False),
        (1, "bad id", False),  # a space
        (1, "line\nbreak", False),  # a forged log line
        (1, "x" * 129, False),  # unbounded
        (1, "-leading-dash", False),
        (1, "ümlaut", False),
    ],
)
def test_an_id_from_a_trusted_proxy_is_kept_if_well_formed(settings, num_proxies, sent, kept):
    settings.CRM_NUM_PROXIES = num_proxies
    request = RequestFactory().get("/api/users/", HTTP_X_REQUEST_ID=sent)
    assert (request_id(request) == sent) is kept
    if not kept:
        assert GENERATED.fullmatch(request_id(request))


@pytest.mark.django_db
def test_the_proxys_id_is_returned(settings):
    settings.CRM_NUM_PROXIES = 1
    response = Client().get("/api/users/", HTTP_X_REQUEST_ID="nginx-1b2c3d")
    assert response["X-Request-ID"] == "nginx-1b2c3d"


@pytest.mark.parametrize(
    ("num_proxies", "remote", "forwarded", "client"),
    [
        (None, "127.0.0.1", None, "127.0.0.1"),
        (None, "127.0.0.1", "203.0.113.5", None),  # an undeclared proxy: unknown
        (0, "127.0.0.1", "203.0.113.5", None),
        (1, "127.0.0.1", "203.0.113.5", "203.0.113.5"),
        (1, "127.0.0.1", "10.9.9.9, 203.0.113.5", "203.0.113.5"),  # a forged first entry
        (2, "127.0.0.1", "10.9.9.9, 203.0.113.5, 10.0.0.2", "203.0.113.5"),
        (3, "127.0.0.1", "203.0.113.5", "203.0.113.5"),  # fewer hops than declared
        (1, "10.0.0.7", None, "10.0.0.7"),  # straight to the worker (a scrape)
    ],
)
def test_the_clients_address_counts_back_through_the_declared_proxies(
    settings, num_proxies, remote, forwarded, client
):
    settings.CRM_NUM_PROXIES = num_proxies
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    request = RequestFactory().get("/metrics", REMOTE_ADDR=remote, **extra)
    assert client_address(request) == client


@pytest.mark.django_db
@pytest.mark.parametrize("format", ["text", "json"])
def test_every_log_line_of_a_request_carries_its_id(log_output, format):
    output = log_output(format)
    client = api_client()
    response = client.get("/api/users/?nonsense=1")  # a 400: the request log and Django's warning
    assert response.status_code == 400
    request_id = response["X-Request-ID"]
    lines = output.getvalue().splitlines()
    ours = [line for line in lines if request_id in line]
    assert len(ours) == 2, lines
    if format == "json":
        records = [json.loads(line) for line in ours]
        assert {r["logger"] for r in records} == {"crm.requests", "django.request"}
        assert all(r["request_id"] == request_id for r in records)
    else:
        assert any("crm.requests" in line for line in ours)
        assert any("django.request" in line and "Bad Request: /api/users/" in line for line in ours)
    assert all(request_id not in line for line in lines if line not in ours)


@pytest.mark.django_db
def test_lines_outside_a_request_carry_no_id(log_output):
    import logging

    output = log_output("text")
    api_client().get("/api/users/?nonsense=1")
    logging.getLogger("crm.test").warning("between requests")
    assert output.getvalue().splitlines()[-1].endswith("crm.test [-] between requests")
