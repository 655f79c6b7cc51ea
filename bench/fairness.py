"""bench_fairness: what one user's expensive requests do to another user's.

The README's serving setup (nginx in front of three gunicorn workers,
production settings, :mod:`bench.servers`) with one user's requests capped
as in production (``CRM_USER_CONCURRENCY`` 2). A quiet user reads first pages
one after another; a noisy one, from two connections (as many as its cap
lets it run at once), asks for deep page numbers of 500 rows, phone number
fragments and four-word searches, as fast as it is answered. The quiet
user's median is measured alone, then beside the noisy one, once per
``CRM_USER_WORKER_MS`` given (0: no budget of worker time, as before it).
"""

from __future__ import annotations

import http.client
import secrets
import statistics
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core.security.api_users import api_user_create

from . import servers

#: What the quiet user asks for: the first page, as most requests do.
QUIET = "/api/users/?page_size=50"

#: What the noisy user asks for, in turn: each within the limits, each costly
#: at 1M customers (190 ms to 1.4 s alone): deep numbered pages of 500 rows,
#: sorted by an indexed column and by one without a fitting index; phone
#: number fragments that match most customers; a search of four words.
NOISY = (
    "/api/users/?page=1900&page_size=500",
    "/api/users/?phone_number=55&page=40&page_size=500",
    "/api/users/?ordering=address__city&page=1000&page_size=500",
    "/api/users/?phone_number=5&page=1000&page_size=500",
    "/api/users/?search=anna+maria+smith+vienna&page_size=500",
)

#: The noisy user runs this long before the quiet user is measured: past its
#: burst (core.security.worker_time.BURST_SECONDS), so that what is measured is
#: the share it is held to, not the head start it may take.
WARM_UP_SECONDS = 15


@dataclass
class Round:
    """One measurement: the quiet user's latencies, what the noisy one got."""

    share_ms: int
    noisy: bool
    latencies: list[float]
    noisy_statuses: Counter

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p90(self) -> float:
        return statistics.quantiles(self.latencies, n=10)[-1] * 1000


def loop(
    url: str, token: str, paths: tuple[str, ...], stop: threading.Event
) -> tuple[list, Counter]:
    """Requests one after another on one keep-alive connection until ``stop``."""
    parts = urlsplit(url)
    client = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"}
    latencies, statuses, turn = [], Counter(), 0
    try:
        while not stop.is_set():
            started = time.perf_counter()
            client.request("GET", paths[turn % len(paths)], headers=headers)
            response = client.getresponse()
            response.read()
            latencies.append(time.perf_counter() - started)
            statuses[response.status] += 1
            turn += 1
            if response.status == 429:
                # As a client that honours Retry-After would, a little sooner.
                time.sleep(min(float(response.getheader("Retry-After", "1")), 1.0))
    finally:
        client.close()
    return latencies, statuses


def measure(url: str, quiet: str, noisy: str | None, seconds: float) -> tuple[list, Counter]:
    """The quiet user's latencies for ``seconds``, with the noisy user's two
    connections running meanwhile unless ``noisy`` is None."""
    stop = threading.Event()
    noisy_results: list[tuple[list, Counter]] = []
    threads = [
        threading.Thread(target=lambda: noisy_results.append(loop(url, noisy, NOISY, stop)))
        for _ in range(2 if noisy else 0)
    ]
    for thread in threads:
        thread.start()
    if noisy:
        time.sleep(WARM_UP_SECONDS)
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    latencies, _ = loop(url, quiet, (QUIET,), stop)
    for thread in threads:
        thread.join()
    statuses = sum((result[1] for result in noisy_results), Counter())
    return latencies, statuses


def fairness_rounds(shares: list[int], seconds: float, workers: int) -> list[Round]:
    quiet = api_user_create(username="bench_fairness_quiet", read_only=True)
    noisy = api_user_create(username="bench_fairness_noisy", read_only=True)
    rounds = []
    for share in shares:
        with (
            tempfile.TemporaryDirectory(prefix="bench_fairness-") as tmp,
            servers.serving_stack(
                Path(tmp),
                secret_key=secrets.token_urlsafe(64),
                token=quiet,
                workers=workers,
                extra_env={
                    "CRM_USER_CONCURRENCY": str(max(1, workers - 1)),
                    "CRM_USER_WORKER_MS": str(share),
                    "CRM_THROTTLE_USER": "1000000000/minute",
                },
            ) as stack,
        ):
            for with_noisy in (False, True):
                latencies, statuses = measure(
                    stack.url, quiet, noisy if with_noisy else None, seconds
                )
                rounds.append(Round(share, with_noisy, latencies, statuses))
    return rounds
