"""bench_list: each scenario raced by three implementations in one interleaved run.

* ``baseline``: the original's implementation (:mod:`core.baseline`), routed
  at ``/api/baseline/users/``, with the original's parameter names;
* ``optimized``: the product, ``/api/users/``;
* ``floor``: the same page by one hand-written SQL query through psycopg, with
  no Django at all: the closest thing to what the hardware allows.

Each scenario checks what each variant returned (status, row count, that the
filter and the sort really hold), so a fast wrong answer cannot win. Variants
are measured interleaved (baseline, optimized, floor, baseline, …) so that
machine noise hits them alike, and the report quotes medians.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import psycopg
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings

from . import reports, selectors
from .api import encode_cursor
from .services import api_user_create

VARIANTS = ("baseline", "optimized", "floor")
OPTIMIZED_URL = "/api/users/"
BASELINE_URL = "/api/baseline/users/"

#: The floor's columns, in the order of the API's rows (core.selectors.CUSTOMER_COLUMNS).
FLOOR_COLUMNS = """
    u.id, u.first_name, u.last_name, u.gender, u.customer_id, u.phone_number, u.birthday,
    u.created, u.last_updated, a.street, a.street_number, a.city_code, a.city, a.country,
    r.points, r.created, r.last_activity
"""
#: How the page query names its first column (see core.selectors._annotated).
PAGE_COLUMN = f'AS "_{next(iter(selectors.CUSTOMER_COLUMNS))}"'

FROM_LEFT = """
    FROM core_appuser u
    JOIN core_address a ON a.id = u.address_id
    LEFT JOIN core_customerrelationship r ON r.appuser_id = u.id
"""
FROM_INNER = """
    FROM core_customerrelationship r
    JOIN core_appuser u ON u.id = r.appuser_id
    JOIN core_address a ON a.id = u.address_id
"""

Rows = list[dict[str, Any]]
Check = Callable[[Rows], str | None]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    optimized: dict[str, Any]  # query parameters of /api/users/
    baseline: dict[str, Any]  # the same request in the original's parameter names
    floor: str  # one SQL statement returning FLOOR_COLUMNS
    floor_params: Sequence[Any]
    check: Check


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


# -- checks ---------------------------------------------------------------


def _instant(value: Any) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


def expect(
    count: int | None = None,
    at_least: int = 0,
    each: Callable[[dict], bool] | None = None,
    each_says: str = "",
    order: Callable[[dict], Any] | None = None,
    descending: bool = False,
) -> Check:
    """A check: how many rows, a predicate every row must meet, a sort order."""

    def check(rows: Rows) -> str | None:
        if count is not None and len(rows) != count:
            return f"expected {count} rows, got {len(rows)}"
        if len(rows) < at_least:
            return f"expected at least {at_least} rows, got {len(rows)}"
        if each is not None:
            wrong = [row["id"] for row in rows if not each(row)]
            if wrong:
                return f"rows {wrong[:5]} do not meet: {each_says}"
        if order is not None:
            keys = [order(row) for row in rows]
            if keys != sorted(keys, reverse=descending):
                return f"rows are not sorted by {each_says or 'the ordering'}"
        return None

    return check


def _points(row: dict) -> int:
    return row["relationship"]["points"]


# -- scenarios --------------------------------------------------------------


@dataclass(frozen=True)
class DataFacts:
    """What the scenarios need to know about the data in the database."""

    customers: int
    deep_page: int  # page 20,000 at 3M rows, scaled down for small datasets
    deep_cursor_boundary: tuple[int, int]  # (points, id) of the last row before the deep page
    rare_phone: str  # a phone-number substring that only a handful of customers share
    month: tuple[dt.date, dt.date]  # a month with sign-ups
    smiths: int  # customers whose last name contains "smith"
    viennese: int  # customers whose city contains "vienna"


#: The scenarios need a few pages of data and a city with customers.
MINIMUM_CUSTOMERS = 600


def count_customers() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM core_appuser")
        return cursor.fetchone()[0]


def data_facts() -> DataFacts:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), max(created) FROM core_appuser")
        customers, newest = cursor.fetchone()
        deep_page = max(2, min(20_000, customers // 50 // 2))
        cursor.execute(
            "SELECT points, appuser_id FROM core_customerrelationship "
            "ORDER BY points DESC, appuser_id DESC OFFSET %s LIMIT 1",
            [(deep_page - 1) * 50 - 1],
        )
        boundary = cursor.fetchone()
        cursor.execute(
            "SELECT phone_number FROM core_appuser WHERE id >= %s ORDER BY id LIMIT 1",
            [max(1, customers // 2)],
        )
        phone = cursor.fetchone()[0]
        # Expected sizes, so that the checks hold on small datasets too.
        cursor.execute("SELECT count(*) FROM core_appuser WHERE upper(last_name) LIKE '%%SMITH%%'")
        smiths = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM core_address WHERE upper(city) LIKE '%%VIENNA%%'")
        viennese = cursor.fetchone()[0]
    last_month = (newest.date().replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    end = (last_month + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    return DataFacts(
        customers, deep_page, boundary, phone[-8:], (last_month, end), smiths, viennese
    )


def build_scenarios(facts: DataFacts) -> list[Scenario]:
    """The README's four scenarios first, then the ones that find the traps."""
    deep, offset = facts.deep_page, (facts.deep_page - 1) * 50
    points, boundary_id = facts.deep_cursor_boundary
    cursor = encode_cursor(
        selectors.customer_ordering("-relationship__points"), [points, boundary_id], False
    )
    first, last = facts.month
    rare = facts.rare_phone
    # Page 3 of Vienna at scale; an earlier page on a small dataset.
    vienna_page = max(1, min(3, -(-facts.viennese // 50)))
    vienna_rows = min(50, facts.viennese - (vienna_page - 1) * 50)
    in_month = f"created {first}..{last}"
    return [
        Scenario(
            "initial_page",
            "the first page, no filter",
            {"page": 1, "page_size": 50},
            {"page": 1, "page_size": 50},
            f"SELECT {FLOOR_COLUMNS} {FROM_LEFT} ORDER BY u.id LIMIT 50",
            [],
            expect(count=50, order=lambda r: r["id"]),
        ),
        Scenario(
            "last_name_smith",
            "substring filter on a common name",
            {"last_name": "smith", "page_size": 50},
            {"last_name__icontains": "smith", "page_size": 50},
            f"SELECT {FLOOR_COLUMNS} {FROM_LEFT} WHERE upper(u.last_name) LIKE '%%SMITH%%' "
            "ORDER BY u.id LIMIT 50",
            [],
            expect(
                count=min(50, facts.smiths),
                each=lambda r: "smith" in r["last_name"].lower(),
                each_says="last_name contains smith",
            ),
        ),
        Scenario(
            "points_desc",
            "sorted by loyalty points, a joined column with many ties",
            {"ordering": "-relationship__points", "page_size": 50},
            {"ordering": "-relationship__points", "page_size": 50},
            f"SELECT {FLOOR_COLUMNS} {FROM_INNER} "
            "ORDER BY r.points DESC, r.appuser_id DESC LIMIT 50",
            [],
            expect(count=50, order=_points, descending=True, each_says="points, descending"),
        ),
        Scenario(
            "city_vienna_page_3",
            "substring filter on the joined city, third page",
            {"city": "vienna", "page": vienna_page, "page_size": 50},
            {"address__city__icontains": "vienna", "page": vienna_page, "page_size": 50},
            f"SELECT {FLOOR_COLUMNS} {FROM_LEFT} WHERE upper(a.city) LIKE '%%VIENNA%%' "
            "ORDER BY u.id LIMIT 50 OFFSET %s",
            [(vienna_page - 1) * 50],
            expect(
                count=vienna_rows,
                each=lambda r: "vienna" in r["address"]["city"].lower(),
                each_says="city contains vienna",
            ),
        ),
        Scenario(
            "deep_page_number",
            f"page {deep:,} by page number",
            {"page": deep, "page_size": 50},
            {"page": deep, "page_size": 50},
            f"SELECT {FLOOR_COLUMNS} {FROM_LEFT} WHERE u.id IN "
            "(SELECT id FROM core_appuser ORDER BY id LIMIT 50 OFFSET %s) ORDER BY u.id",
            [offset],
            expect(count=50, each=lambda r: r["id"] > offset, each_says=f"id beyond {offset}"),
        ),
        Scenario(
            "deep_cursor_points",
            f"page {deep:,} by cursor, sorted by points",
            {"ordering": "-relationship__points", "page_size": 50, "cursor": cursor},
            {"ordering": "-relationship__points", "page": deep, "page_size": 50},
            f"SELECT {FLOOR_COLUMNS} {FROM_INNER} WHERE (r.points, r.appuser_id) < (%s, %s) "
            "ORDER BY r.points DESC, r.appuser_id DESC LIMIT 50",
            [points, boundary_id],
            expect(
                count=50,
                order=_points,
                descending=True,
                each=lambda r: _points(r) <= points,
                each_says=f"points at most {points}, descending",
            ),
        ),
        Scenario(
            "no_match",
            "a substring no customer has",
            {"last_name": "zzqxj", "page_size": 50},
            {"last_name__icontains": "zzqxj", "page_size": 50},
            f"SELECT {FLOOR_COLUMNS} {FROM_LEFT} WHERE upper(u.last_name) LIKE '%%ZZQXJ%%' "
            "ORDER BY u.id LIMIT 50",
            [],
            expect(count=0),
        ),
        Scenario(
            "rare_phone",
            "a phone-number substring a handful of customers share",
            {"phone_number": rare, "page_size": 50},
            {"phone_number__icontains": rare, "page_size": 50},
            f"SELECT {FLOOR_COLUMNS} {FROM_LEFT} WHERE upper(u.phone_number) LIKE %s "
            "ORDER BY u.id LIMIT 50",
            [f"%{rare.upper()}%"],
            expect(at_least=1, each=lambda r: rare in r["phone_number"], each_says=rare),
        ),
        Scenario(
            "vienna_by_points",
            "filter on the joined city, sorted by joined points",
            {"city": "vienna", "ordering": "-relationship__points", "page_size": 50},
            {
                "address__city__icontains": "vienna",
                "ordering": "-relationship__points",
                "page_size": 50,
            },
            f"SELECT {FLOOR_COLUMNS} {FROM_INNER} WHERE upper(a.city) LIKE '%%VIENNA%%' "
            "ORDER BY r.points DESC, r.appuser_id DESC LIMIT 50",
            [],
            expect(
                at_least=1,
                each=lambda r: "vienna" in r["address"]["city"].lower(),
                order=_points,
                descending=True,
                each_says="city contains vienna, points descending",
            ),
        ),
        Scenario(
            "created_last_month",
            "customers who signed up in a month, newest first",
            {"created_from": first, "created_to": last, "ordering": "-created", "page_size": 50},
            {
                "created__gte": first,
                "created__lte": f"{last}T23:59:59.999999+00:00",
                "ordering": "-created",
                "page_size": 50,
            },
            f"SELECT {FLOOR_COLUMNS} {FROM_LEFT} WHERE u.created >= %s AND u.created < %s "
            "ORDER BY u.created DESC, u.id DESC LIMIT 50",
            [first, last + dt.timedelta(days=1)],
            expect(
                at_least=1,
                each=lambda r: first <= _instant(r["created"]).date() <= last,
                order=lambda r: _instant(r["created"]),
                descending=True,
                each_says=in_month,
            ),
        ),
        Scenario(
            "page_size_500",
            "the largest page",
            {"page_size": 500},
            {"page_size": 500},
            f"SELECT {FLOOR_COLUMNS} {FROM_LEFT} ORDER BY u.id LIMIT 500",
            [],
            expect(count=min(500, facts.customers), order=lambda r: r["id"]),
        ),
    ]


# -- running ----------------------------------------------------------------


def scenario_url(scenario: Scenario, variant: str) -> str:
    """What a variant requests: a URL, or for the floor its SQL."""
    if variant == "optimized":
        return f"{OPTIMIZED_URL}?{urlencode(scenario.optimized)}"
    if variant == "baseline":
        return f"{BASELINE_URL}?{urlencode(scenario.baseline)}"
    return "sql: " + " ".join(scenario.floor.split())


class Runner:
    """Runs one request of a scenario in one variant and returns its rows."""

    def __init__(self) -> None:
        token = api_user_create(username="bench_list", read_only=True)
        self.client = Client(headers={"authorization": f"Token {token}"})
        params = connection.get_connection_params()
        # No prepared statements: after five runs psycopg would switch to a
        # generic plan, which cannot use a trigram index for "LIKE $1".
        self.floor = psycopg.connect(
            **{
                k: params[k]
                for k in ("host", "port", "dbname", "user", "password", "options")
                if params.get(k) is not None
            },
            autocommit=True,
            prepare_threshold=None,
        )

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
            return selectors.customer_rows(rows)
        started = time.perf_counter()
        response = self.client.get(scenario_url(scenario, variant))
        m.times_ms.append((time.perf_counter() - started) * 1000)
        m.status, m.response_bytes = response.status_code, len(response.content)
        if response.status_code != 200:
            return []
        return response.json()["results"]

    def count_queries(self, scenario: Scenario, variant: str) -> tuple[int, list[str]]:
        if variant == "floor":
            return 1, [scenario.floor]
        with CaptureQueriesContext(connection) as captured:
            self.client.get(scenario_url(scenario, variant))
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


def explain(scenarios: Sequence[Scenario], output: Path) -> list[Path]:
    """EXPLAIN (ANALYZE, BUFFERS) of each scenario's page query, as the optimized API runs it."""
    output.mkdir(parents=True, exist_ok=True)
    runner = Runner()
    paths = []
    try:
        for scenario in scenarios:
            _, queries = runner.count_queries(scenario, "optimized")
            # The page query is the one selecting the list's row columns
            # (core.selectors._annotated): not the throttle's upsert, not the
            # count or its estimate, which may come after it.
            page_query = next(q for q in queries if PAGE_COLUMN in q)
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


# -- reporting --------------------------------------------------------------

CSV_COLUMNS = (
    # The original's columns first, so old and new reports line up.
    "timestamp",
    "label",
    "url",
    "repeat",
    "status",
    "avg_ms",
    "best_ms",
    "worst_ms",
    "response_size",
    "variant",
    "p50_ms",
    "p95_ms",
    "rows",
    "sql_queries",
    "speedup",
    "overhead",
    "check",
    "db_customers",
    "postgres_version",
    "git_commit",
)


def ratios(results: Sequence[Measurement]) -> dict[str, tuple[float | None, float | None]]:
    """Per scenario: speedup (baseline / optimized p50) and overhead (optimized / floor p50)."""
    p50 = {(m.scenario.name, m.variant): m.stat("p50") for m in results}
    out = {}
    for name in dict.fromkeys(m.scenario.name for m in results):
        optimized = p50.get((name, "optimized"))
        baseline, floor = p50.get((name, "baseline")), p50.get((name, "floor"))
        out[name] = (
            baseline / optimized if baseline and optimized else None,
            optimized / floor if optimized and floor else None,
        )
    return out


def write_reports(
    results: Sequence[Measurement], *, output: Path, repeat: int, customers: int
) -> dict[str, Path]:
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    commit, version = reports.git_commit(), reports.postgres_version()
    speed = ratios(results)
    output.mkdir(parents=True, exist_ok=True)
    csv_path = output / "benchmarks.csv"
    for m in results:
        speedup, overhead = speed[m.scenario.name]
        reports.append_csv(
            csv_path,
            CSV_COLUMNS,
            {
                "timestamp": stamp,
                "label": m.scenario.name,
                "url": scenario_url(m.scenario, m.variant),
                "repeat": repeat,
                "status": m.status,
                "avg_ms": round(m.stat("mean"), 3),
                "best_ms": round(m.stat("min"), 3),
                "worst_ms": round(m.stat("max"), 3),
                "response_size": m.response_bytes,
                "variant": m.variant,
                "p50_ms": round(m.stat("p50"), 3),
                "p95_ms": round(m.stat("p95"), 3),
                "rows": m.rows,
                "sql_queries": m.sql_queries,
                "speedup": round(speedup, 1) if speedup else "",
                "overhead": round(overhead, 2) if overhead else "",
                "check": "ok" if m.failure is None else m.failure,
                "db_customers": customers,
                "postgres_version": version,
                "git_commit": commit,
            },
        )
    md_path = output / "benchmarks.md"
    md_path.write_text(
        markdown(
            results,
            speed,
            customers=customers,
            repeat=repeat,
            version=version,
            commit=commit,
            stamp=stamp,
        )
    )
    png_path = output / "benchmarks.png"
    chart(results, png_path, customers=customers)
    return {"csv": csv_path, "md": md_path, "png": png_path}


def markdown(results, speed, *, customers, repeat, version, commit, stamp) -> str:
    by = {(m.scenario.name, m.variant): m for m in results}
    variants = [v for v in VARIANTS if any(m.variant == v for m in results)]
    names = list(dict.fromkeys(m.scenario.name for m in results))
    lines = [
        f"# bench_list: {customers:,} customers, PostgreSQL {version}, commit {commit}",
        "",
        f"{stamp}; p50 of {repeat} interleaved runs per variant, in milliseconds, through "
        "Django's test client (floor: one psycopg query).",
        "",
        "| scenario | "
        + " | ".join(f"{v} p50" for v in variants)
        + " | speedup | overhead | check |",
        "|---|" + "---:|" * len(variants) + "---:|---:|---|",
    ]
    for name in names:
        cells = [f"{by[(name, v)].stat('p50'):.2f}" for v in variants]
        speedup, overhead = speed[name]
        failures = [f"{v}: {by[(name, v)].failure}" for v in variants if by[(name, v)].failure]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {f'{speedup:.0f}x' if speedup else 'n/a'} | "
            f"{f'{overhead:.1f}x' if overhead else 'n/a'} | {'; '.join(failures) or 'ok'} |"
        )
    lines += [
        "",
        "speedup = baseline p50 / optimized p50; overhead = optimized p50 / floor p50.",
        "",
        "| scenario | variant | min | p50 | p95 | max | mean | rows | bytes | SQL queries |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        for v in variants:
            m = by[(name, v)]
            lines.append(
                f"| {name} | {v} | "
                + " | ".join(f"{m.stat(s):.2f}" for s in ("min", "p50", "p95", "max", "mean"))
                + f" | {m.rows} | {m.response_bytes} | {m.sql_queries} |"
            )
    lines += ["", "Scenarios:", ""]
    for name in names:
        m = next(m for m in results if m.scenario.name == name)
        url = scenario_url(m.scenario, "optimized")
        if len(url) > 120:
            url = url[:117] + "..."
        lines.append(f"* `{name}`: {m.scenario.description}: `GET {url}`")
    return "\n".join(lines) + "\n"


def chart(results: Sequence[Measurement], path: Path, *, customers: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(m.scenario.name for m in results))
    variants = [v for v in VARIANTS if any(m.variant == v for m in results)]
    by = {(m.scenario.name, m.variant): m.stat("p50") for m in results}
    width = 0.8 / len(variants)
    colors = {"baseline": "#c44e52", "optimized": "#4c72b0", "floor": "#55a868"}
    figure, axes = plt.subplots(figsize=(max(8, 1.1 * len(names)), 5))
    for i, v in enumerate(variants):
        xs = [j + (i - (len(variants) - 1) / 2) * width for j in range(len(names))]
        axes.bar(xs, [by[(n, v)] for n in names], width, label=v, color=colors[v])
    axes.set_yscale("log")
    axes.set_ylabel("p50 latency (ms, log scale)")
    axes.set_xticks(range(len(names)), names, rotation=30, ha="right")
    axes.set_title(f"GET /api/users/ at {customers:,} customers")
    axes.legend()
    axes.grid(axis="y", which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# -- search, export and admin ----------------------------------------------------

SEARCHES = ("jon smith", "mary johnson", "maria gonzalez", "smiht")
ADMIN_PAGES = (
    "/admin/core/appuser/",
    "/admin/core/appuser/?q=smith",
    "/admin/core/appuser/?gender__exact=f",
    "/admin/core/appuser/?country=Austria",
    "/admin/core/appuser/?p=2000",
    "/admin/core/address/",
    "/admin/core/address/?q=vienna",
    "/admin/core/customerrelationship/",
)


def _p50(client: Client, url: str, repeat: int) -> tuple[float, Any]:
    client.get(url)
    times, response = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times, 50)), response


def feature_figures(repeat: int) -> list[str]:
    """Search, export and admin timings, as lines of text (bench_features)."""
    import resource

    from django.contrib.auth import get_user_model

    token = api_user_create(username="bench_features", read_only=True)
    client = Client(headers={"authorization": f"Token {token}"})
    lines = []
    limits = override_settings(CRM_THROTTLE_RATES={"anon": None, "user": None})
    limits.enable()
    try:
        for text in SEARCHES:
            ms, response = _p50(client, f"{OPTIMIZED_URL}?{urlencode({'search': text})}", repeat)
            lines.append(
                f"search {text!r}: p50 {ms:.0f} ms, {response.json().get('count')} matches"
            )
        for fmt in ("csv", "ndjson"):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            started = time.perf_counter()
            response = client.get(f"{OPTIMIZED_URL}export/?format={fmt}")
            rows = size = 0
            for chunk in response.streaming_content:
                rows += chunk.count(b"\n")
                size += len(chunk)
            seconds = time.perf_counter() - started
            rows -= fmt == "csv"  # the header
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            lines.append(
                f"export {fmt}: {rows:,} rows, {size / 1e6:.0f} MB in {seconds:.1f} s, "
                f"{rows / seconds:,.0f} rows/s; peak RSS {before:.0f} -> {after:.0f} MB"
            )
        staff, _ = get_user_model().objects.get_or_create(username="bench_features_admin")
        staff.is_staff = staff.is_superuser = True
        staff.save()
        admin_client = Client()
        admin_client.force_login(staff)
        for path in ADMIN_PAGES:
            ms, response = _p50(admin_client, path, repeat)
            lines.append(f"admin {path}: p50 {ms:.0f} ms (HTTP {response.status_code})")
    finally:
        limits.disable()
    return lines
