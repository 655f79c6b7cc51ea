"""bench_http: the API's serving capacity beside a raw floor, in one run.

The README's serving setup (nginx in front of gunicorn under production
settings, :mod:`bench.servers`) serves the API and, behind the same nginx
and in a gunicorn of the same configuration and worker count, the raw floor
(:mod:`bench.floor`): the same pages by the same SQL with no framework. The
load generator is wrk, a C program whose Lua script (``wrk_mix.lua``) picks
each request from a weighted plan, so that it costs the two shared cores as
little as possible. Each plan runs against the API and then the floor, round
after round, and every answer is checked before the load starts (a fast wrong
answer must not win).

locust remains for the realistic plan with invalid requests mixed in
(``--invalid-share``), whose expected 400s wrk cannot tell from failures.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection
from django.test.utils import override_settings

from core.security.api_users import api_user_create

from . import scenarios, servers

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_mix.lua"

#: How often each bench_list scenario comes up in the mixed plan: what people
#: do most (first pages, the README's filters) most, deep page numbers and
#: huge pages rarely.
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

#: The plans a capacity run measures: three single pages, and the mix.
PLANS: dict[str, dict[str, float]] = {
    "initial_page": {"initial_page": 1},
    "last_name_smith": {"last_name_smith": 1},
    "points_desc": {"points_desc": 1},
    "mix": SCENARIO_WEIGHTS,
}

TARGETS = ("api", "floor")

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


def default_workers() -> int:
    """What the README's serving setup runs (see crm.gunicorn_conf)."""
    from crm import gunicorn_conf

    return gunicorn_conf.workers


@dataclass(frozen=True)
class WrkRun:
    """One wrk run of one plan against one target."""

    plan: str
    target: str
    round: int
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]

    @classmethod
    def from_summary(cls, plan: str, target: str, number: int, summary: dict) -> WrkRun:
        """From what ``wrk_mix.lua`` wrote (microseconds)."""
        return cls(
            plan=plan,
            target=target,
            round=number,
            requests=summary["requests"],
            seconds=summary["duration_us"] / 1e6,
            **{f"{p}_ms": summary[f"{p}_us"] / 1000 for p in ("p50", "p90", "p95", "p99", "max")},
            errors={k[7:]: v for k, v in summary.items() if k.startswith("errors_")},
        )

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        """Responses that were not 2xx, and connections that failed or timed out."""
        return sum(self.errors.values())


@dataclass
class CapacityReport:
    """Every run of a capacity benchmark, and what it ran on."""

    connections: int
    duration: int
    workers: int
    proxy: bool
    pgbouncer: bool
    runs: list[WrkRun] = field(default_factory=list)
    max_db_connections: int = 0

    def median(self, plan: str, target: str, stat: str) -> float:
        values = sorted(
            getattr(run, stat) for run in self.runs if run.plan == plan and run.target == target
        )
        if not values:
            return 0.0
        middle = len(values) // 2
        return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def wrk_executable() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    return path


def run_wrk(
    base_url: str,
    plan: Sequence[tuple[float, str]],
    *,
    token: str,
    connections: int,
    duration: int,
    workdir: Path,
) -> dict:
    """One wrk run over ``plan`` ((weight, path) pairs); its summary as a dict."""
    plan_file, result_file = workdir / "wrk-plan.tsv", workdir / "wrk-result.json"
    plan_file.write_text("".join(f"{weight}\t{path}\n" for weight, path in plan))
    result_file.unlink(missing_ok=True)
    completed = subprocess.run(
        [
            wrk_executable(),
            "--threads",
            "1",
            "--connections",
            str(connections),
            "--duration",
            f"{duration}s",
            "--timeout",
            "10s",
            "--script",
            str(WRK_SCRIPT),
            base_url,
        ],
        env={
            **os.environ,
            "CRM_WRK_PLAN": str(plan_file),
            "CRM_WRK_RESULT": str(result_file),
            "CRM_WRK_TOKEN": token,
        },
        capture_output=True,
        text=True,
        timeout=duration + 60,
    )
    if completed.returncode != 0 or not result_file.exists():
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return json.loads(result_file.read_text())


def database_connections() -> int:
    """Client sessions on this database, but this process's own and the floor's."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
            "AND application_name <> %s",
            [servers.FLOOR_APPLICATION_NAME],
        )
        return cursor.fetchone()[0]


class ConnectionSampler:
    """The most database sessions seen while the block runs, beyond those before it."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> ConnectionSampler:
        before = database_connections()

        def sample() -> None:
            while not self._stop.wait(0.5):
                self.peak = max(self.peak, database_connections() - before)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def fetch_json(url: str, headers: Mapping[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def check_answers(
    base_url: str, chosen: Sequence[scenarios.Scenario], token: str, floor: bool
) -> None:
    """Every scenario's answer through the stack is right, from the API and the floor."""
    headers = {"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"}
    for scenario in chosen:
        targets = {"api": scenarios.scenario_url(scenario, "optimized")}
        if floor:
            targets["floor"] = f"/floor/{scenario.name}"
        for target, path in targets.items():
            status, body = fetch_json(base_url + path, headers)
            failure = f"HTTP {status}" if status != 200 else scenario.check(body["results"])
            if failure:
                raise RuntimeError(f"{scenario.name} ({target}) answered wrongly: {failure}")


def floor_plan(chosen: Sequence[scenarios.Scenario]) -> dict[str, list]:
    """The floor's plan: each scenario's body query and its parameters."""
    return {
        scenario.name: [
            scenarios.floor_body_sql(scenario),
            # JSON has no dates: as text, PostgreSQL reads them back as its own.
            [p if isinstance(p, int | float | str) else str(p) for p in scenario.floor_params],
        ]
        for scenario in chosen
    }


def run_capacity(
    *,
    connections: int,
    duration: int,
    rounds: int,
    workers: int,
    plans: Sequence[str],
    floor: bool = True,
    proxy: bool = True,
    pgbouncer: bool = False,
    progress: Callable[[str], None] = print,
) -> CapacityReport:
    """Each plan against the API and the floor, ``rounds`` times, with wrk."""
    wrk_executable()
    token = api_user_create(username="bench_http", read_only=True)
    # Cursors in the plan must be signed with the server's key.
    secret_key = secrets.token_urlsafe(64)
    with override_settings(SECRET_KEY=secret_key):
        chosen = scenarios.build_scenarios(scenarios.data_facts())
    by_name = {s.name: s for s in chosen}
    report = CapacityReport(connections, duration, workers, proxy, pgbouncer)
    with tempfile.TemporaryDirectory(prefix="bench_http-") as tmp:
        workdir = Path(tmp)
        plan_file = None
        if floor:
            plan_file = workdir / "floor-plan.json"
            plan_file.write_text(json.dumps(floor_plan(chosen)))
        with (
            ConnectionSampler() as sampler,
            servers.serving_stack(
                workdir,
                secret_key=secret_key,
                token=token,
                workers=workers,
                floor_plan=plan_file,
                proxy=proxy,
                pgbouncer=pgbouncer,
                extra_env={"CRM_THROTTLE_USER": "1000000000/minute"},
            ) as stack,
        ):
            check_answers(stack.url, chosen, token, floor and proxy)
            progress(
                f"{'nginx + ' if proxy else ''}gunicorn ({workers} workers)"
                f"{' + PgBouncer' if pgbouncer else ''} at {stack.url}; "
                f"wrk: {connections} connections, {duration} s per run, {rounds} round(s)"
            )
            targets = [t for t in TARGETS if t == "api" or (floor and proxy)]
            for number in range(1, rounds + 1):
                for plan in plans:
                    for target in targets:
                        weighted = [
                            (
                                weight,
                                scenarios.scenario_url(by_name[name], "optimized")
                                if target == "api"
                                else f"/floor/{name}",
                            )
                            for name, weight in PLANS[plan].items()
                        ]
                        summary = run_wrk(
                            stack.url,
                            weighted,
                            token=token,
                            connections=connections,
                            duration=duration,
                            workdir=workdir,
                        )
                        run = WrkRun.from_summary(plan, target, number, summary)
                        report.runs.append(run)
                        progress(
                            f"round {number} {plan:<16} {target:<5} "
                            f"{run.requests_per_second:8,.0f} req/s  p50 {run.p50_ms:6.1f} "
                            f"ms  p99 {run.p99_ms:6.1f} ms  failed {run.failed}"
                        )
        report.max_db_connections = sampler.peak
    return report


# -- the realistic plan, with locust --------------------------------------------


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
    token = api_user_create(username="bench_http", read_only=True)
    secret_key = secrets.token_urlsafe(64)
    with override_settings(SECRET_KEY=secret_key):
        plan = locust_plan(scenarios.build_scenarios(scenarios.data_facts()), invalid_share)
    with tempfile.TemporaryDirectory(prefix="bench_http-") as tmp:
        workdir = Path(tmp)
        with (
            ConnectionSampler() as sampler,
            servers.serving_stack(
                workdir,
                secret_key=secret_key,
                token=token,
                workers=workers,
                extra_env={"CRM_THROTTLE_USER": "1000000000/minute"},
            ) as stack,
        ):
            progress(f"gunicorn ({workers} workers) at {stack.url}; locust: {users} users")
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
                    stack.url,
                    "--csv",
                    str(workdir / "load"),
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
        if locust.returncode not in (0, 1):  # 1: some requests failed
            raise RuntimeError(f"locust failed ({locust.returncode}): {locust.stderr[-2000:]}")
        with (workdir / "load_stats.csv").open() as f:
            total = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")
        with (workdir / "load_failures.csv").open() as f:
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
        max_db_connections=sampler.peak,
        connection_limit=workers,
        failure_kinds={
            f"{row['Name']}: {row['Error']}": int(row["Occurrences"]) for row in failures
        },
    )
