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
