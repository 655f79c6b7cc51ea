"""Slow and idle clients against the README's serving setup (nginx in front of
gunicorn), with real processes and real sockets: they must not stop the service."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from bench import servers
from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create
from crm.tests.processes import needs_programs

pytestmark = [pytest.mark.django_db(transaction=True), needs_programs("nginx")]

#: Generous: an answer that takes longer means a client was left waiting for
#: a worker (without the proxy they wait for gunicorn's 30 s timeout).
ANSWER_WITHIN = 10


@pytest.fixture
def stack(tmp_path):
    # Exports bigger than the sockets' buffers (about 20 MB of CSV), so that a
    # slow reader would keep a worker writing.
    customer_dataset_replace(n=100_000, chunk=50_000, seed=5)
    token = api_user_create(username="patient", read_only=True)
    with servers.serving_stack(
        tmp_path,
        secret_key="s" * 64,
        token=token,
        workers=3,
        extra_env={"CRM_THROTTLE_ANON": "none", "CRM_THROTTLE_USER": "none"},
    ) as running:
        yield running, token


def answered(url: str, token: str) -> int:
    # (nginx replaces X-Forwarded-Proto; gunicorn alone would redirect without it.)
    headers = {"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=ANSWER_WITHIN) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_fifty_slow_or_idle_connections_leave_the_service_answering(stack):
    running, token = stack
    host, port = running.url.removeprefix("http://").split(":")
    slow = []
    for _ in range(50):
        s = socket.create_connection((host, int(port)))
        s.sendall(b"GET /api/users/ HTTP/1.1\r\nHost: x\r\n")  # and never the end
        slow.append(s)
    idle = [socket.create_connection((host, int(port))) for _ in range(20)]
    stop = threading.Event()

    def trickle() -> None:  # slowloris: a header line now and then, forever
        while not stop.wait(1.0):
            for s in slow:
                with contextlib.suppress(OSError):
                    s.sendall(b"X-Slow: 1\r\n")

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        time.sleep(2)
        statuses = [
            answered(f"{running.url}/api/users/?page_size=5&count=none", token) for _ in range(30)
        ]
    finally:
        stop.set()
        trickler.join()
        for s in slow + idle:
            s.close()
    assert statuses == [200] * 30


def test_exports_read_at_ten_kilobytes_a_second_leave_a_worker_for_the_api(stack):
    """An export holds its worker while its client reads (the proxy does not
    buffer it), so no more than CRM_EXPORT_TOTAL (one fewer than the three
    workers) stream at once: the third is refused, and the API answers."""
    running, _ = stack
    host, port = running.url.removeprefix("http://").split(":")
    readers = []
    for number in range(3):
        # Three users, so that a per-user cap on exports does not refuse them.
        token = api_user_create(username=f"slow-reader-{number}", read_only=True)
        s = socket.create_connection((host, int(port)))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(
            f"GET /api/users/export/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Token {token}\r\n"
            "X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n".encode()
        )
        readers.append(s)
    stop = threading.Event()
    received = [b""] * len(readers)

    def read_slowly(index: int, s: socket.socket) -> None:
        while not stop.is_set():
            try:
                chunk = s.recv(1024)
            except OSError:
                return
            if not chunk:
                return
            received[index] += chunk
            time.sleep(0.1)  # 10 kB/s

    threads = [
        threading.Thread(target=read_slowly, args=(i, s), daemon=True)
        for i, s in enumerate(readers)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(3)
        token = api_user_create(username="impatient", read_only=True)
        statuses = [answered(f"{running.url}/api/users/1/", token) for _ in range(20)]
    finally:
        stop.set()
        for s in readers:
            s.close()
        for thread in threads:
            thread.join()
    assert statuses == [200] * 20
    # Two exports were answered 200 and were being streamed (rows after the
    # headers, more than any error page's worth; how many depends on the
    # machine's load, not on the server); the third was a JSON 429.
    heads = sorted(body[:12] for body in received)
    assert heads == [b"HTTP/1.1 200", b"HTTP/1.1 200", b"HTTP/1.1 429"], heads
    streamed = [len(body) for body in received if body.startswith(b"HTTP/1.1 200")]
    assert all(size > 5_000 for size in streamed), streamed
    refused = next(body for body in received if body.startswith(b"HTTP/1.1 429"))
    assert b"the most it streams at once" in refused
