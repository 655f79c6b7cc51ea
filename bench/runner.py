"""bench_list's runs: each scenario raced by its variants in one interleaved run.

Variants are measured interleaved (baseline, optimized, floor, baseline, …)
so that machine noise hits them alike; the report quotes medians.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings

from core.customers.columns import customer_rows
from core.security.api_users import api_user_create
from crm.observability.middleware import INSTRUMENTATION

from .scenarios import Rows, Scenario, scenario_url

#: How the page statement begins (see core.customers.page_statement.PAGE).
PAGE_STATEMENT = "WITH page AS MATERIALIZED"


@dataclass
class Measurement:
    scenario: Scenario
    variant: str
    times_ms: list[float] = field(default_factory=list)
    status: int = 0
    rows: int = 0
    response_bytes: int = 0
    sql_queries: int = 0
    failure: str | None = None

    def stat(self, name: str) -> float:
        values = np.asarray(self.times_ms)
        return {
            "min": float(values.min()),
            "p50": float(np.percentile(values, 50)),
            "p95": float(np.percentile(values, 95)),
            "max": float(values.max()),
            "mean": float(values.mean()),
        }[name]


class Runner:
    """Runs one request of a scenario in one variant and returns its rows."""

    def __init__(self) -> None:
        token = api_user_create(username="bench_list", read_only=True)
        self.client = Client(headers={"authorization": f"Token {token}"})
        # The same API with crm.observability's middleware left out of the
        # chain (the test client builds its chain once, on first use).
        self.uninstrumented = Client(headers={"authorization": f"Token {token}"})
        with override_settings(
            MIDDLEWARE=[m for m in settings.MIDDLEWARE if m not in INSTRUMENTATION]
        ):
            self.uninstrumented.handler.load_middleware()
        self.floor = plain_connection()

    def close(self) -> None:
        self.floor.close()

    def run(self, scenario: Scenario, variant: str, m: Measurement) -> Rows:
        if variant == "floor":
            started = time.perf_counter()
            with self.floor.cursor() as cursor:
                cursor.execute(scenario.floor, scenario.floor_params)
                rows = cursor.fetchall()
            m.times_ms.append((time.perf_counter() - started) * 1000)
            m.status, m.response_bytes = 200, 0
            return customer_rows(rows)
        client = self.uninstrumented if variant == "uninstrumented" else self.client
        started = time.perf_counter()
        response = client.get(scenario_url(scenario, variant))
        m.times_ms.append((time.perf_counter() - started) * 1000)
        m.status, m.response_bytes = response.status_code, len(response.content)
        if response.status_code != 200:
            return []
        return response.json()["results"]

    def count_queries(self, scenario: Scenario, variant: str) -> tuple[int, list[str]]:
        if variant == "floor":
            return 1, [scenario.floor]
        client = self.uninstrumented if variant == "uninstrumented" else self.client
        with CaptureQueriesContext(connection) as captured:
            client.get(scenario_url(scenario, variant))
        return len(captured), [q["sql"] for q in captured.captured_queries]


def run_benchmark(
    scenarios: Sequence[Scenario],
    variants: Sequence[str],
    *,
    repeat: int,
    warmup: int,
    progress: Callable[[str], None] = lambda line: None,
) -> list[Measurement]:
    runner = Runner()
    results: list[Measurement] = []
    # The baseline's worst queries take seconds: lift the API's statement
    # timeout for the run. Throttling stays on (it is part of a request's
    # cost) with room for a benchmark's pace.
    limits = override_settings(
        CRM_STATEMENT_TIMEOUT_MS=0,
        CRM_THROTTLE_RATES={"anon": None, "user": "1000000/minute"},
    )
    limits.enable()
    try:
        for scenario in scenarios:
            measurements = {v: Measurement(scenario, v) for v in variants}
            for _ in range(warmup):
                for variant in variants:
                    runner.run(scenario, variant, Measurement(scenario, variant))
            for _ in range(repeat):
                # Interleaved: baseline, optimized, floor, baseline, ...
                for variant in variants:
                    m = measurements[variant]
                    rows = runner.run(scenario, variant, m)
                    m.rows = len(rows)
                    if m.failure is None:
                        if m.status != 200:
                            m.failure = f"HTTP {m.status}"
                        else:
                            m.failure = scenario.check(rows)
            for variant in variants:
                m = measurements[variant]
                m.sql_queries, _ = runner.count_queries(scenario, variant)
                results.append(m)
                progress(
                    f"{scenario.name:<20} {variant:<9} p50 {m.stat('p50'):9.2f} ms "
                    f"{'OK' if m.failure is None else 'FAILED: ' + m.failure}"
                )
    finally:
        limits.disable()
        runner.close()
    return results


def plain_connection() -> psycopg.Connection:
    """A connection to Django's database that is not Django's: autocommit,
    the same session options, and no prepared statements (after five runs
    psycopg would switch to a generic plan, which cannot use a trigram index
    for ``LIKE $1``)."""
    params = connection.get_connection_params()
    return psycopg.connect(
        **{
            k: params[k]
            for k in ("host", "port", "dbname", "user", "password", "options")
            if params.get(k) is not None
        },
        autocommit=True,
        prepare_threshold=None,
    )


def finding_query(queries: Sequence[str]) -> str:
    """The statement that finds a page and its count, among a request's
    queries (not the throttle's upsert, nor a text filter's look-up)."""
    for query in queries:
        if PAGE_STATEMENT in query:
            return query
    raise LookupError(f"no page statement among the request's {len(queries)} queries")


def explain(scenarios: Sequence[Scenario], output: Path) -> list[Path]:
    """EXPLAIN (ANALYZE, BUFFERS) of each scenario's page query, as the optimized API runs it."""
    output.mkdir(parents=True, exist_ok=True)
    runner = Runner()
    paths = []
    try:
        for scenario in scenarios:
            _, queries = runner.count_queries(scenario, "optimized")
            page_query = finding_query(queries)
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {page_query}")
                plan = "\n".join(row[0] for row in cursor.fetchall())
            path = output / f"{scenario.name}.txt"
            path.write_text(
                f"-- {scenario.description}\n-- GET {scenario_url(scenario, 'optimized')}\n\n"
                f"{page_query}\n\n{plan}\n"
            )
            paths.append(path)
    finally:
        runner.close()
    return paths
