"""bench_http's capacity runs: wrk rounds of the API and the raw floor.

wrk is a C program whose Lua script (``wrk_mix.lua``) picks each request from
a weighted plan, so that it costs the two shared cores as little as possible.
Each plan runs against the API and then the floor, round after round, on the
stack :func:`bench.http_load.stack_under_load` sets up, and every answer is
checked before the load starts (a fast wrong answer must not win).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import scenarios
from .http_load import SCENARIO_WEIGHTS, stack_under_load

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_mix.lua"

#: The plans a capacity run measures: three single pages, and the mix.
PLANS: dict[str, dict[str, float]] = {
    "initial_page": {"initial_page": 1},
    "last_name_smith": {"last_name_smith": 1},
    "points_desc": {"points_desc": 1},
    "mix": SCENARIO_WEIGHTS,
}

TARGETS = ("api", "floor")


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
    report = CapacityReport(connections, duration, workers, proxy, pgbouncer)
    with stack_under_load(
        workers=workers,
        floor_plan=floor_plan if floor else None,
        proxy=proxy,
        pgbouncer=pgbouncer,
    ) as loaded:
        url, token = loaded.stack.url, loaded.token
        by_name = {s.name: s for s in loaded.scenarios}
        check_answers(url, loaded.scenarios, token, floor and proxy)
        progress(
            f"{'nginx + ' if proxy else ''}gunicorn ({workers} workers)"
            f"{' + PgBouncer' if pgbouncer else ''} at {url}; "
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
                        url,
                        weighted,
                        token=token,
                        connections=connections,
                        duration=duration,
                        workdir=loaded.workdir,
                    )
                    run = WrkRun.from_summary(plan, target, number, summary)
                    report.runs.append(run)
                    progress(
                        f"round {number} {plan:<16} {target:<5} "
                        f"{run.requests_per_second:8,.0f} req/s  p50 {run.p50_ms:6.1f} "
                        f"ms  p99 {run.p99_ms:6.1f} ms  failed {run.failed}"
                    )
    report.max_db_connections = loaded.sampler.peak
    return report
