"""bench_http's realistic plan with locust: every scenario weighted, invalid
requests mixed in (``--invalid-share``), on the stack
:func:`bench.http_load.stack_under_load` sets up.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import scenarios
from .http_load import SCENARIO_WEIGHTS, stack_under_load

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"

#: Requests that must be refused, mixed in with --invalid-share: with a 400
#: naming the parameter, or for an overlong URL a 414 from the server in front
#: (nginx's or gunicorn's request line limit), never a 5xx.
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
class LocustResult:
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


def locust_plan(chosen: Sequence[scenarios.Scenario], invalid_share: float) -> list[list]:
    """The optimized variant of every bench_list scenario, weighted, plus invalid requests."""
    plan = [
        [SCENARIO_WEIGHTS[s.name], scenarios.scenario_url(s, "optimized"), [200]] for s in chosen
    ]
    if invalid_share > 0:
        valid_weight = sum(weight for weight, _, _ in plan)
        each = valid_weight * invalid_share / (1 - invalid_share) / len(INVALID_REQUESTS)
        plan += [[each, path, statuses] for path, statuses in INVALID_REQUESTS]
    return plan


def run_locust(
    *, users: int, duration: int, workers: int, invalid_share: float, progress=print
) -> LocustResult:
    """locust's closed-loop clients over the weighted plan, invalid requests included."""
    with stack_under_load(workers=workers) as loaded:
        plan = locust_plan(loaded.scenarios, invalid_share)
        progress(f"gunicorn ({workers} workers) at {loaded.stack.url}; locust: {users} users")
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
                loaded.stack.url,
                "--csv",
                str(loaded.workdir / "load"),
                "--only-summary",
                "--stop-timeout",
                "5",
                "--loglevel",
                "ERROR",
            ],
            env={**os.environ, "CRM_LOAD_PLAN": json.dumps(plan), "CRM_LOAD_TOKEN": loaded.token},
            capture_output=True,
            text=True,
            timeout=duration + 120,
        )
        if locust.returncode not in (0, 1):  # 1: some requests failed
            raise RuntimeError(f"locust failed ({locust.returncode}): {locust.stderr[-2000:]}")
        with (loaded.workdir / "load_stats.csv").open() as f:
            total = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")
        with (loaded.workdir / "load_failures.csv").open() as f:
            failures = list(csv.DictReader(f))
    server_errors = sum(
        int(row["Occurrences"]) for row in failures if row["Error"].startswith("HTTP 5")
    )
    return LocustResult(
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
        max_db_connections=loaded.sampler.peak,
        connection_limit=workers,
        failure_kinds={
            f"{row['Name']}: {row['Error']}": int(row["Occurrences"]) for row in failures
        },
    )
