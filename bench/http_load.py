"""bench_http: the API under gunicorn with production settings, driven by locust over loopback.

Bounded in time and in place: the server listens on 127.0.0.1 only, the load
runs for ``duration`` seconds, and both processes are stopped when it ends,
also on failure.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import signal
import socket
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
from django.test.utils import override_settings

from core.security.api_users import api_user_create

from . import scenarios

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"

#: Requests that must be refused, mixed in with --invalid-share: with a 400
#: naming the parameter, or for an overlong URL a 414 from gunicorn itself
#: (its request line limit is 4,094 bytes), never a 5xx.
INVALID_REQUESTS = [
    ("/api/users/?last_nme=smith", [400]),
    ("/api/users/?page=abc", [400]),
    ("/api/users/?page_size=100000", [400]),
    ("/api/users/?ordering=password", [400]),
    ("/api/users/?cursor=tampered", [400]),
    ("/api/users/?id=99999999999999999999999", [400]),
    ("/api/users/?birthday_from=2023-02-30", [400]),
    ("/api/users/?last_name=" + "x" * 5000, [400, 414]),
    ("/api/users/?last_name=a%00b", [400]),
    ("/api/users/?created_from=2024-02-01&created_to=2024-01-01", [400]),
]


@dataclass
class HttpBenchResult:
    users: int
    duration: int
    workers: int
    requests: int
    failures: int
    server_errors: int
    requests_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_db_connections: int
    connection_limit: int
    failure_kinds: dict[str, int]


def default_workers() -> int:
    """What the README's serving setup runs (see crm.gunicorn_conf)."""
    from crm import gunicorn_conf

    return gunicorn_conf.workers


#: How often each bench_list scenario comes up: what people do most (first
#: pages, the README's filters) most, deep page numbers and huge pages rarely.
SCENARIO_WEIGHTS = {
    "initial_page": 10,
    "last_name_smith": 10,
    "points_desc": 10,
    "city_vienna_page_3": 10,
    "deep_cursor_points": 5,
    "no_match": 3,
    "rare_phone": 3,
    "created_last_month": 3,
    "vienna_by_points": 2,
    "page_size_500": 1,
    "deep_page_number": 1,
}


def load_plan(invalid_share: float) -> list[list]:
    """The optimized variant of every bench_list scenario, weighted, plus invalid requests."""
    plan_scenarios = scenarios.build_scenarios(scenarios.data_facts())
    plan = [
        [SCENARIO_WEIGHTS[s.name], scenarios.scenario_url(s, "optimized"), [200]]
        for s in plan_scenarios
    ]
    if invalid_share > 0:
        valid_weight = sum(weight for weight, _, _ in plan)
        each = valid_weight * invalid_share / (1 - invalid_share) / len(INVALID_REQUESTS)
        plan += [[each, path, statuses] for path, statuses in INVALID_REQUESTS]
    return plan


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def start_gunicorn(
    port: int, workers: int, secret_key: str, log: Path, database_env: dict | None = None
) -> subprocess.Popen:
    """gunicorn with production settings on 127.0.0.1:``port``, in its own process group.

    ``database_env`` chooses the database (``CRM_PGDATA``, ``DATABASE_URL``,
    ``DATABASE_NAME``); by default, the very one this process uses.
    """
    if database_env is None:
        # Serve the database this process measures (the test suite's, say).
        database_env = connection.child_environment()
    env = {
        **os.environ,
        **database_env,
        "CRM_ENV": "production",
        "DJANGO_SECRET_KEY": secret_key,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        # The load test measures serving capacity, not the rate limit.
        "CRM_THROTTLE_USER": "100000000/minute",
        "DJANGO_SETTINGS_MODULE": "crm.settings",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:crm.gunicorn_conf",
            "crm.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--error-logfile",
            str(log),
        ],
        cwd=settings.BASE_DIR,
        env=env,
        start_new_session=True,
    )


def wait_ready(port: int, token: str, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/users/?page_size=1&count=none",
        headers={"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"},
    )
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"gunicorn did not answer on 127.0.0.1:{port} within {seconds:.0f} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def run_http_bench(
    *, users: int, duration: int, workers: int, invalid_share: float, progress=print
) -> HttpBenchResult:
    token = api_user_create(username="bench_http", read_only=True)
    # Cursors in the plan must be signed with the server's key.
    secret_key = secrets.token_urlsafe(64)
    with override_settings(SECRET_KEY=secret_key):
        plan = load_plan(invalid_share)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench_http-") as tmp:
        tmp_path = Path(tmp)
        server = start_gunicorn(port, workers, secret_key, tmp_path / "gunicorn.log")
        # Sessions of other clients (this process's own is not counted) are
        # not the server's: count only what appears once it runs.
        before = database_connections()
        peak = [0]
        sampling = threading.Event()

        def sample() -> None:
            try:
                while not sampling.wait(0.5):
                    peak[0] = max(peak[0], database_connections() - before)
            finally:
                # This thread's own connection: left to the garbage collector,
                # it may outlive the run (and keep the test database in use).
                connection.close()

        sampler = threading.Thread(target=sample, daemon=True)
        try:
            wait_ready(port, token, server)
            progress(
                f"gunicorn ({workers} workers) on 127.0.0.1:{port}; locust: {users} users "
                f"for {duration} s"
            )
            sampler.start()
            locust = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "locust",
                    "-f",
                    str(LOCUSTFILE),
                    "--headless",
                    "--users",
                    str(users),
                    "--spawn-rate",
                    str(users),
                    "--run-time",
                    f"{duration}s",
                    "--host",
                    f"http://127.0.0.1:{port}",
                    "--csv",
                    str(tmp_path / "load"),
                    "--only-summary",
                    "--stop-timeout",
                    "5",
                    "--loglevel",
                    "ERROR",
                ],
                env={**os.environ, "CRM_LOAD_PLAN": json.dumps(plan), "CRM_LOAD_TOKEN": token},
                capture_output=True,
                text=True,
                timeout=duration + 120,
            )
        finally:
            sampling.set()
            stop(server)
        if locust.returncode not in (0, 1):  # 1: some requests failed
            raise RuntimeError(f"locust failed ({locust.returncode}): {locust.stderr[-2000:]}")
        with (tmp_path / "load_stats.csv").open() as f:
            total = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")
        with (tmp_path / "load_failures.csv").open() as f:
            failures = list(csv.DictReader(f))
    server_errors = sum(
        int(row["Occurrences"]) for row in failures if row["Error"].startswith("HTTP 5")
    )
    return HttpBenchResult(
        users=users,
        duration=duration,
        workers=workers,
        requests=int(total["Request Count"]),
        failures=int(total["Failure Count"]),
        server_errors=server_errors,
        requests_per_second=float(total["Requests/s"]),
        p50_ms=float(total["50%"]),
        p95_ms=float(total["95%"]),
        p99_ms=float(total["99%"]),
        max_db_connections=peak[0],
        connection_limit=workers,
        failure_kinds={
            f"{row['Name']}: {row['Error']}": int(row["Occurrences"]) for row in failures
        },
    )
