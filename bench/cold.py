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
"""

from __future__ import annotations

import os
import secrets
import statistics
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

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
