"""A real gunicorn with several workers: one /metrics for all of them, and what production serves.

gunicorn runs with the project's configuration (crm/gunicorn_conf.py, whose
hooks prepare the metrics folder and drop an exited worker's live gauges),
production settings, and JSON logs captured into its log file.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench import servers
from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create

pytestmark = pytest.mark.django_db(transaction=True)

WORKERS = 3
REQUESTS = 90
#: Bursts of REQUESTS at most, until two workers have served some.
BURSTS = 5


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirects)


def fetch(port: int, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with OPENER.open(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def scrape(port: int) -> list:
    status, _, body = fetch(port, "/metrics")
    assert status == 200
    return [s for family in text_string_to_metric_families(body.decode()) for s in family.samples]


def list_requests(samples: list) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == "crm_http_request_duration_seconds_count"
        and s.labels["route"] == "/api/users/"
        and s.labels["status"] == "200"
    )


def worker_pids(samples: list) -> set[int]:
    return {int(s.labels["pid"]) for s in samples if s.name == "process_resident_memory_bytes"}


def test_metrics_cover_every_worker_and_survive_a_worker_dying(tmp_path, monkeypatch):
    customer_dataset_replace(n=50, chunk=50)
    token = api_user_create(username="scraped", read_only=True)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_4242.db").write_bytes(b"left by an earlier run")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    monkeypatch.setenv("DJANGO_LOG_FORMAT", "json")
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "--capture-output")  # workers' stderr to the log
    log = tmp_path / "gunicorn.log"
    port = servers.free_port()
    server = servers.gunicorn_alone(port, workers=WORKERS, secret_key="k" * 64, log=log)
    try:
        servers.wait_ready(
            f"http://127.0.0.1:{port}/api/users/?page_size=1&count=none",
            [server],
            {"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"},
        )
        before = scrape(port)
        assert not (metrics_dir / "counter_4242.db").exists(), "stale files are wiped at start"
        assert len(worker_pids(before)) == WORKERS

        api = {"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"}
        # Bursts until two workers have served (on a busy machine one worker
        # can accept a whole burst): the counts below must add up across them.
        ids: set[str] = set()
        sent = 0
        for _ in range(BURSTS):
            sent += REQUESTS
            with ThreadPoolExecutor(6) as pool:
                answers = list(
                    pool.map(lambda _: fetch(port, "/api/users/?page_size=5", api), range(REQUESTS))
                )
            assert {status for status, _, _ in answers} == {200}
            ids |= {headers["X-Request-ID"] for _, headers, _ in answers}
            served_by = log_lines_by_request(log, ids)
            if len(set(served_by.values())) >= 2:
                break
        assert len(ids) == sent, "every request has its own id"

        # Whichever worker answers the scrape, it counts every worker's requests.
        for _ in range(2 * WORKERS):
            assert list_requests(scrape(port)) - list_requests(before) == sent

        served_by = log_lines_by_request(log, ids)
        assert set(served_by) == ids, "every request has its line in the request log"
        assert len(set(served_by.values())) >= 2, "several workers served the requests"

        # A worker dies: its counts stay, its live gauges go (child_exit), a
        # new worker takes its place.
        victim = max(set(served_by.values()))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            samples = scrape(port)
            pids = worker_pids(samples)
            if victim not in pids and len(pids) == WORKERS:
                break
            assert time.monotonic() < deadline, f"no new worker: {pids}"
            time.sleep(0.3)
        assert not list(metrics_dir.glob(f"gauge_live*_{victim}.db"))
        assert list_requests(samples) - list_requests(before) == sent
    finally:
        servers.stop(server)
    assert not list(metrics_dir.glob("gauge_live*.db")), "every worker's live gauges are dropped"


def log_lines_by_request(log, ids: set[str]) -> dict[str, int]:
    """Request id -> the pid of the worker whose request log line has it."""
    served_by = {}
    for line in log.read_text().splitlines():
        if not line.startswith("{"):
            continue  # gunicorn's own lines
        record = json.loads(line)
        if record["logger"] == "crm.requests" and record["request_id"] in ids:
            assert record["route"] == "/api/users/"
            assert record["params"] == ["page_size"]
            served_by[record["request_id"]] = record["pid"]
    return served_by


def test_production_serving_probes_headers_and_request_ids(tmp_path, monkeypatch):
    token = api_user_create(username="prod", read_only=True)
    access_log = tmp_path / "access.log"
    monkeypatch.setenv("GUNICORN_CMD_ARGS", f"--access-logfile {access_log}")
    port = servers.free_port()
    server = servers.gunicorn_alone(
        port, workers=2, secret_key="k" * 64, log=tmp_path / "gunicorn.log"
    )
    try:
        servers.wait_ready(
            f"http://127.0.0.1:{port}/api/users/?page_size=1&count=none",
            [server],
            {"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"},
        )
        # Probes answer over plain HTTP and to any Host; the API redirects to HTTPS.
        for path in ("/healthz", "/readyz"):
            assert fetch(port, path, {"Host": "10.0.0.1:8000"})[0] == 200
        assert fetch(port, "/api/users/")[0] == 301
        # Metrics to loopback, but not to a client behind an undeclared proxy.
        assert fetch(port, "/metrics")[0] == 200
        assert fetch(port, "/metrics", {"X-Forwarded-For": "203.0.113.9"})[0] == 403

        api = {"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"}
        status, headers, _ = fetch(port, "/api/users/?page_size=1", {**api, "X-Request-ID": "mine"})
        assert status == 200
        assert headers["X-Request-ID"] != "mine", "no proxy declared: the client's id is not kept"
        assert len(headers["X-Request-ID"]) == 32
        assert "Server-Timing" not in headers, "off in production unless CRM_SERVER_TIMING=1"
        assert fetch(port, "/api/users/?last_name=Quaxelrod", api)[0] == 200
    finally:
        servers.stop(server)
    # gunicorn's own access log, when turned on, has the request id and no query.
    lines = access_log.read_text().splitlines()
    assert any(
        '"GET /api/users/" 200' in line and headers["X-Request-ID"] in line for line in lines
    )
    assert "Quaxelrod" not in access_log.read_text()
