"""bench_list's reports: a CSV row per scenario and variant, a Markdown table and a chart."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from core import run_records

from .runner import Measurement
from .scenarios import VARIANTS, scenario_url

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
    commit, version = run_records.git_commit(), run_records.postgres_version()
    speed = ratios(results)
    output.mkdir(parents=True, exist_ok=True)
    csv_path = output / "benchmarks.csv"
    for m in results:
        speedup, overhead = speed[m.scenario.name]
        run_records.append_csv(
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
    colors = {
        "baseline": "#c44e52",
        "optimized": "#4c72b0",
        "floor": "#55a868",
        "uninstrumented": "#8172b2",
    }
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


# -- bench_http ---------------------------------------------------------------

CAPACITY_COLUMNS = (
    "timestamp",
    "git_commit",
    "postgres_version",
    "db_customers",
    "generator",
    "proxy",
    "pooler",
    "workers",
    "connections",
    "duration_s",
    "round",
    "plan",
    "target",
    "requests",
    "requests_per_second",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "failed",
    "max_db_connections",
)


def write_capacity_reports(report, *, output: Path, customers: int) -> dict[str, Path]:
    """bench_http's run: a CSV row per wrk run, a Markdown table of medians, a chart."""
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    commit, version = run_records.git_commit(), run_records.postgres_version()
    output.mkdir(parents=True, exist_ok=True)
    csv_path = output / "http_benchmarks.csv"
    for run in report.runs:
        run_records.append_csv(
            csv_path,
            CAPACITY_COLUMNS,
            {
                "timestamp": stamp,
                "git_commit": commit,
                "postgres_version": version,
                "db_customers": customers,
                "generator": "wrk",
                "proxy": "nginx" if report.proxy else "none",
                "pooler": "pgbouncer" if report.pgbouncer else "none",
                "workers": report.workers,
                "connections": report.connections,
                "duration_s": report.duration,
                "round": run.round,
                "plan": run.plan,
                "target": run.target,
                "requests": run.requests,
                "requests_per_second": round(run.requests_per_second, 1),
                "p50_ms": run.p50_ms,
                "p90_ms": run.p90_ms,
                "p95_ms": run.p95_ms,
                "p99_ms": run.p99_ms,
                "max_ms": run.max_ms,
                "failed": run.failed,
                "max_db_connections": report.max_db_connections,
            },
        )
    plans = list(dict.fromkeys(run.plan for run in report.runs))
    targets = list(dict.fromkeys(run.target for run in report.runs))
    rounds = max(run.round for run in report.runs)
    lines = [
        f"# bench_http: {customers:,} customers, PostgreSQL {version}, commit {commit}",
        "",
        f"{stamp}; wrk, {report.connections} connections, {report.duration} s per run, "
        f"median of {rounds} round(s); {'nginx + ' if report.proxy else ''}gunicorn "
        f"({report.workers} workers){' + PgBouncer' if report.pgbouncer else ''}, "
        "production settings; at most "
        f"{report.max_db_connections} database sessions.",
        "",
        "| plan | target | requests/s | p50 ms | p95 ms | p99 ms | failed | API / floor |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for plan in plans:
        floor_rps = report.median(plan, "floor", "requests_per_second")
        for target in targets:
            rps = report.median(plan, target, "requests_per_second")
            failed = sum(r.failed for r in report.runs if r.plan == plan and r.target == target)
            ratio = f"{rps / floor_rps:.2f}" if target == "api" and floor_rps else ""
            lines.append(
                f"| {plan} | {target} | {rps:,.0f} | "
                + " | ".join(
                    f"{report.median(plan, target, stat):.1f}"
                    for stat in ("p50_ms", "p95_ms", "p99_ms")
                )
                + f" | {failed} | {ratio} |"
            )
    md_path = output / "http_benchmarks.md"
    md_path.write_text("\n".join(lines) + "\n")
    png_path = output / "http_benchmarks.png"
    capacity_chart(report, plans, targets, png_path, customers=customers)
    return {"csv": csv_path, "md": md_path, "png": png_path}


def capacity_chart(report, plans, targets, path: Path, *, customers: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"api": "#4c72b0", "floor": "#55a868"}
    width = 0.8 / len(targets)
    figure, (left, right) = plt.subplots(1, 2, figsize=(max(9, 2.2 * len(plans)), 4.5))
    for i, target in enumerate(targets):
        xs = [j + (i - (len(targets) - 1) / 2) * width for j in range(len(plans))]
        left.bar(
            xs,
            [report.median(p, target, "requests_per_second") for p in plans],
            width,
            label=target,
            color=colors[target],
        )
        right.bar(
            xs, [report.median(p, target, "p99_ms") for p in plans], width, color=colors[target]
        )
    for axes, title in ((left, "requests/s (higher is better)"), (right, "p99 latency, ms")):
        axes.set_xticks(range(len(plans)), plans, rotation=20, ha="right")
        axes.set_title(title)
        axes.grid(axis="y", alpha=0.3)
    left.legend()
    figure.suptitle(
        f"bench_http at {customers:,} customers: API and raw floor, "
        f"{report.connections} connections"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
