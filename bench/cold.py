"""bench_cold: a fresh gunicorn worker's first list request against its warm ones.

Issue 33: each worker read its planning sample on its first list request
(729 ms at 3M) while /readyz already said ready. Now a worker reads what
requests need before it accepts a connection. This starts the API's
gunicorn (production settings, the operator's configuration, one worker, no
proxy) ``restarts`` times on the data there is; each time, once /readyz is
200, it times the first ``?page_size=50`` (a token the worker has never
seen: its look-up is part of a fresh worker's first request) and then
``warm`` more, and reads the metrics' count of requests that had to read the
sample. Times are the client's (connection and all), on loopback.

``--after-load N`` also replaces the data with ``generate_data --n N`` while
two workers serve, and times how soon after the swap the list's count is the
new data's in every answer (issue 33: within 1 s; before, at the next
300-second refresh of each worker's planning sample). Above twice the
exact-count threshold (20,000 customers by default), before and after, the
count is the planning sample's estimate, which is what a stale sample gets
wrong; below it the count is exact whatever the sample.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection

from core.security.api_users import api_user_create

from . import servers

PATH = "/api/users/?page_size=50"


@dataclass(frozen=True)
class ColdRun:
    first_ms: float
    warm_ms: float
    request_reads: int

    @property
    def ratio(self) -> float:
        return self.first_ms / self.warm_ms


def timed(url: str, headers: dict[str, str]) -> float:
    request = urllib.request.Request(url, headers=headers)
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")
    return (time.perf_counter() - started) * 1000


def request_reads(port: int) -> int:
    """Reads of the planning sample a request had to make (the metric's reason="request")."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("crm_process_state_reads_total{") and 'reason="request"' in line
    )


def cold_runs(restarts: int, warm: int) -> list[ColdRun]:
    token = api_user_create(username="bench_cold", read_only=True, rotate=True)
    headers = {"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"}
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for number in range(restarts):
            port = servers.free_port()
            log = Path(folder) / f"gunicorn-{number}.log"
            server = servers.gunicorn_alone(
                port, workers=1, secret_key=secrets.token_urlsafe(60), log=log
            )
            try:
                servers.wait_ready(f"http://127.0.0.1:{port}/readyz", [server], {})
                url = f"http://127.0.0.1:{port}{PATH}"
                first = timed(url, headers)
                warm_ms = statistics.median(timed(url, headers) for _ in range(warm))
                runs.append(ColdRun(first, warm_ms, request_reads(port)))
            finally:
                servers.stop(server)
    return runs


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def count(port: int, headers: dict[str, str]) -> int:
    url = f"http://127.0.0.1:{port}/api/users/?page_size=1"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["count"]


@dataclass(frozen=True)
class Freshness:
    before: int
    after: int
    #: From the swap (generate_data's "swap: 1/1" line) to the first of ten
    #: answers in a row with the new count; None: not within the wait.
    seconds: float | None


def freshness_after_load(n: int, workers: int = 2, wait: float = 60) -> Freshness:
    """The API's count, polled every 20 ms through gunicorn, while
    ``generate_data --n N`` replaces the data: how soon after its swap every
    answer has the new count (issue 33: within 1 s; before, 300 s)."""
    token = api_user_create(username="bench_cold", read_only=True, rotate=True)
    headers = {"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"}
    with tempfile.TemporaryDirectory() as folder:
        port = servers.free_port()
        server = servers.gunicorn_alone(
            port, workers=workers, secret_key=secrets.token_urlsafe(60), log=Path(folder) / "log"
        )
        try:
            servers.wait_ready(f"http://127.0.0.1:{port}/readyz", [server], {})
            servers.wait_workers_prepared(f"http://127.0.0.1:{port}", workers, [server])
            before = count(port, headers)
            seen: dict[str, float | int] = {}

            def poll() -> None:
                streak, first = 0, 0.0
                while "stop" not in seen:
                    answer = count(port, headers)
                    if answer != before:
                        streak, first = streak + 1, first or time.monotonic()
                        if streak == 10:
                            seen.update(at=first, after=answer)
                            return
                    else:
                        streak, first = 0, 0.0
                    time.sleep(0.02)

            threading.Thread(target=poll, daemon=True).start()
            load = subprocess.Popen(
                [sys.executable, "manage.py", "generate_data", "--n", str(n)],
                cwd=settings.BASE_DIR,
                env={**os.environ, **connection.child_environment()},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            swapped = None
            for line in load.stdout:
                if swapped is None and line.startswith("swap: 1/1"):
                    swapped = time.monotonic()
            if load.wait() != 0 or swapped is None:
                raise RuntimeError("generate_data failed")
            deadline = time.monotonic() + wait
            while "at" not in seen and time.monotonic() < deadline:
                time.sleep(0.05)
            seen["stop"] = 1
            if "at" not in seen:
                return Freshness(before, count(port, headers), None)
            return Freshness(before, int(seen["after"]), max(0.0, seen["at"] - swapped))
        finally:
            servers.stop(server)
