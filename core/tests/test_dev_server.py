"""``make run``'s development server, in a real process: concurrency, ports."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.tests.dev_server import free_port, other_sessions, quickstart_server
from crm.tests.processes import REPO, manage

CLIENTS = 40
REQUESTS = 200
#: quickstart's pool (SERVER_ENVIRONMENT's DATABASE_POOL_MAX).
POOL_MAX = 4
#: The server's own session that listens for a load's swap (core.customers.sample).
LISTENING = 1


@pytest.mark.django_db(transaction=True)
def test_forty_concurrent_clients_keep_a_handful_of_connections():
    """The issue's `seq 1 200 | xargs -P 40 curl …`, twice: every request answered,
    never more connections than the pool's (and the one that listens), and no
    leftovers afterwards."""
    with quickstart_server("--n", "300") as server:
        url = f"{server.url}/api/users/?last_name=smith&page_size=5"
        headers = {"Authorization": f"Token {server.read_token}"}

        def get(_) -> int:
            request = urllib.request.Request(url, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code

        peak = 0
        for _ in range(2):
            with ThreadPoolExecutor(CLIENTS) as pool:
                statuses = pool.map(get, range(REQUESTS))
                pending = list(statuses)  # waits for all
                peak = max(peak, other_sessions())
            assert pending == [200] * REQUESTS, sorted(set(pending))
        # Sampled while the load ran too (below): the count never grows past the pool.
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(get, i) for i in range(REQUESTS)]
            while not all(f.done() for f in futures):
                peak = max(peak, other_sessions())
                time.sleep(0.05)
        assert [f.result() for f in futures] == [200] * REQUESTS
        assert peak <= POOL_MAX + LISTENING, f"{peak} connections for {CLIENTS} clients"
        assert other_sessions() <= POOL_MAX + LISTENING


@pytest.mark.django_db(transaction=True)
def test_a_burst_right_after_make_run_starts_is_served_and_reads_no_sample():
    """Issue 33's burst: `make run` (its 10,000 customers), then at once 40
    clients sending 200 requests of `last_name=a&page_size=5`. Each of
    runserver's threads read the planning sample on its first request, and
    forty of them held the pool's four connections past its 5-second wait:
    7 of 200 were 503s. Now the server reads it before it listens."""
    with quickstart_server() as server:
        url = f"{server.url}/api/users/?last_name=a&page_size=5"
        headers = {"Authorization": f"Token {server.read_token}"}

        def get(_) -> int:
            request = urllib.request.Request(url, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code

        with ThreadPoolExecutor(CLIENTS) as pool:
            statuses = list(pool.map(get, range(REQUESTS)))
        assert statuses == [200] * REQUESTS, sorted(set(statuses))
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert 'crm_process_state_reads_total{name="planning_sample",reason="start"} 1.0' in (
            metrics
        )
        assert 'reason="request"' not in metrics, "a request read the planning sample"


def test_make_run_passes_the_port():
    done = subprocess.run(
        ["make", "-n", "run", "PORT=8001"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert "quickstart --addrport 127.0.0.1:8001" in done.stdout


def test_a_taken_port_gets_advice_before_any_work():
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        done = manage("quickstart", "--addrport", f"127.0.0.1:{port}", timeout=60)
    assert done.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "make run PORT=" in done.stderr
    assert "Database migrated" not in done.stdout, "it stops before migrating"


def test_a_malformed_address_is_refused():
    done = manage("quickstart", "--addrport", "localhost:http", timeout=60)
    assert done.returncode == 1
    assert "is not ip:port or a port number" in done.stderr
    assert sys.executable  # the same interpreter ran it
