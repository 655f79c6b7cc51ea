"""What exports may hold: slots per user held until the client has read the file,
a cap per machine, an hourly budget per user; nothing piles up in the proxy."""

from __future__ import annotations

import contextlib
import socket
import time

import pytest

from bench import servers
from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create
from core.tests.clients import api_client
from crm.tests.http_client import call
from crm.tests.processes import needs_programs

EXPORT = "/api/users/export/"


def open_unread_export(url: str, token: str) -> tuple[socket.socket, bytes]:
    """Start an export and read only its status line: a client that never reads on."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(15)
    sock.connect((host, int(port)))
    sock.sendall(
        f"GET {EXPORT} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Token {token}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    head = sock.recv(12)
    return sock, head


def folder_bytes(path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.mark.django_db(transaction=True)
@needs_programs("nginx")
def test_exports_a_user_does_not_read_hold_their_slots_and_nothing_piles_up_in_nginx(tmp_path):
    # About 12 MB of CSV each: more than every socket buffer on the way.
    customer_dataset_replace(n=50_000, chunk=25_000, seed=5)
    hoarder = api_user_create(username="hoarder", read_only=True)
    other = api_user_create(username="other", read_only=True)
    with servers.serving_stack(
        tmp_path,
        secret_key="e" * 64,
        token=other,
        workers=3,
        # The per-user export slots alone decide here, not the machine's cap
        # on exports (nor the cap on one user's requests, off in test stacks).
        extra_env={"CRM_EXPORT_TOTAL": "10"},
    ) as stack:
        opened = [open_unread_export(stack.url, hoarder) for _ in range(20)]
        try:
            heads = [head for _, head in opened]
            assert heads.count(b"HTTP/1.1 200") == 2, heads
            assert heads.count(b"HTTP/1.1 429") == 18, heads
            assert call(stack.url, "/api/users/?page_size=5", token=other).status == 200
            # nginx holds a buffer per export, not the files.
            assert folder_bytes(tmp_path / "nginx-proxy") < 1_000_000
        finally:
            for sock, _ in opened:
                sock.close()
        # Once its client has gone, an export's worker notices at its next
        # write and lets its slot go.
        deadline = time.monotonic() + 60
        while (status := call(stack.url, f"{EXPORT}?format=ndjson", token=hoarder).status) != 200:
            assert status == 429
            assert time.monotonic() < deadline, "the slots were never released"
            time.sleep(0.5)


@pytest.mark.django_db(transaction=True)
def test_exports_past_the_hourly_budget_are_refused(settings):
    customer_dataset_replace(n=20, chunk=20, seed=5)
    settings.CRM_THROTTLE_RATES = {**settings.CRM_THROTTLE_RATES, "export": "3/hour"}
    client = api_client("exporter")
    assert [exported(client) for _ in range(3)] == [200] * 3
    refused = client.get(EXPORT)
    assert refused.status_code == 429
    assert "exports in the last window" in refused.json()["detail"]
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert exported(api_client("another-exporter")) == 200, "per user"


def exported(client) -> int:
    """An export read to its end (which ends its transaction and frees its slots)."""
    response = client.get(EXPORT)
    with contextlib.closing(response):
        if response.streaming:
            b"".join(response.streaming_content)
    return response.status_code


@pytest.mark.django_db(transaction=True)
@needs_programs("nginx")
def test_one_user_leaves_an_export_slot_of_the_machine_to_the_others(tmp_path):
    """Three workers stream two exports at once (CRM_EXPORT_TOTAL's default):
    one user reading two slowly held both, and everyone else's export was a
    429 for up to ten minutes. One user now holds at most one of them."""
    customer_dataset_replace(n=50_000, chunk=25_000, seed=5)
    slow = api_user_create(username="slow-reader", read_only=True)
    other = api_user_create(username="other-exporter", read_only=True)
    with servers.serving_stack(tmp_path, secret_key="e" * 64, token=other, workers=3) as stack:
        opened = [open_unread_export(stack.url, slow) for _ in range(2)]
        try:
            heads = [head for _, head in opened]
            sock, head = open_unread_export(stack.url, other)
            sock.close()
        finally:
            for held, _ in opened:
                held.close()
    assert heads == [b"HTTP/1.1 200", b"HTTP/1.1 429"]
    assert head == b"HTTP/1.1 200"
