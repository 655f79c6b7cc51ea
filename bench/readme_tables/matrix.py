"""The matrix's tables: each folder's runs, before and after, and the list's targets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.conf import settings

from bench.matrix import summaries
from bench.matrix.reports import PublishedRun, read_runs
from bench.matrix.summaries import ms_text

from .runs import (
    GENERATE_3M_SECONDS,
    GENERATE_RSS_MB,
    HTTP_FIRST_PAGE_P99_MS,
    HTTP_FLOOR_SHARE,
    HTTP_PLANS,
    http_targets,
    latest_generate,
)
from .text import LINK, customers_text, day, share, short, verdict


def matrix_folders(published: Path) -> list[Path]:
    """The published matrix folders with at least one run, smallest data first."""
    folders = [
        (runs[-1].customers, path.name, path)
        for path in published.glob("matrix-*")
        if path.is_dir() and (runs := read_runs(path))
    ]
    return [path for _, _, path in sorted(folders)]


def figures(run: PublishedRun) -> dict[str, object]:
    """A run's figures as the tables show them, by the matrix's own summaries."""
    results = run.results
    values = summaries.p50s(results)
    s = summaries.summary(values)
    counts = summaries.count_summary(results, settings.CRM_EXACT_COUNT_THRESHOLD)
    regrets = summaries.regret_summary(results)
    cursor = [r.stat("p50") for r in results if r.times_ms and r.page_position.startswith("cursor")]
    return {
        **s,
        "right": sum(1 for r in results if r.failure is None),
        "count_share": counts["share_within"],
        "statements": max(r.sql_queries for r in results),
        "regret_median": float(np.median(regrets["api"])) if regrets else None,
        "regret_worst": float(regrets["api"].max()) if regrets else None,
        "plan_regret_median": float(np.median(regrets["plan"])) if regrets else None,
        "plan_regret_worst": float(regrets["plan"].max()) if regrets else None,
        "cursor_median": float(np.median(cursor)) if cursor else None,
    }


def regret_text(f: dict[str, object]) -> str:
    if f["regret_median"] is None:
        return "not measured"
    return f"{f['regret_median']:.2f} / {f['regret_worst']:.2f}"


def run_text(run: PublishedRun) -> str:
    return f"{run.label} ({short(run.commit)}, {day(run.stamp)})"


def matrix_table(folder: Path) -> list[str]:
    """One row per run label of one folder."""
    runs = read_runs(folder)
    lines = [
        f"`{folder.name}`: bench_matrix at {customers_text(runs[-1].customers)} customers, "
        f"seed {runs[-1].seed}, p50 per combination in ms, the latest run of each label "
        f"([`matrix.md`]({LINK}/{folder.name}/matrix.md) is the latest run's report).",
        "",
        "| run | commit | date | PostgreSQL | combinations | median | 90th pct | 95th pct "
        "| worst | ≤ 15 ms | over 50 ms | right answers | counts within 2x | SQL statements "
        "(most) | regret median / worst |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        f = figures(run)
        lines.append(
            f"| {run.label} | {short(run.commit)} | {day(run.stamp)} | {run.version.split()[0]} "
            f"| {f['combinations']} | {ms_text(f['median'])} | {ms_text(f['p90'])} "
            f"| {ms_text(f['p95'])} | {ms_text(f['max'])} | {share(f['share_15'])} "
            f"| {f['over_50']} | {f['right']} of {len(run.results)} | {share(f['count_share'])} "
            f"| {f['statements']} | {regret_text(f)} |"
        )
    return lines


def summary_rows(published: Path, last: int) -> list[str]:
    lines = [
        "| data | run | combinations | median | 95th pct | worst | ≤ 15 ms | over 50 ms "
        "| SQL statements (most) | regret median / worst |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for folder in matrix_folders(published):
        for run in read_runs(folder)[-last:]:
            f = figures(run)
            data = f"{customers_text(run.customers)}, seed {run.seed}"
            if not run.version.startswith("18"):
                data += f", PostgreSQL {run.version.split()[0]} untuned"
            lines.append(
                f"| [{data}]({LINK}/{folder.name}/matrix.md) | {run_text(run)} "
                f"| {f['combinations']} | {ms_text(f['median'])} | {ms_text(f['p95'])} "
                f"| {ms_text(f['max'])} | {share(f['share_15'])} | {f['over_50']} "
                f"| {f['statements']} | {regret_text(f)} |"
            )
    return lines


def matrix_summary(published: Path) -> list[str]:
    """Each matrix folder's last two labels: before and after."""
    return summary_rows(published, 2)


def matrix_now(published: Path) -> list[str]:
    """Each matrix folder's latest label."""
    return summary_rows(published, 1)


# -- the list's targets ----------------------------------------------------------------


def latest(published: Path, folder: str) -> PublishedRun | None:
    runs = read_runs(published / folder) if (published / folder).is_dir() else []
    return runs[-1] if runs else None


def plan_regret_met(f: dict[str, object]) -> bool:
    return (
        f["plan_regret_median"] <= summaries.TARGET_REGRET
        and f["plan_regret_worst"] <= summaries.TARGET_WORST_REGRET
    )


#: The runs the list's targets are judged on: the latest of each folder.
TARGET_RUNS = ("matrix-3m", "matrix-10m")


def list_targets(published: Path) -> list[str]:
    """The list's targets, a row each, met or not with the figure of the latest
    run of each folder of :data:`TARGET_RUNS` (a column each), generate_data's and
    bench_http's."""
    t = summaries
    runs = {folder: latest(published, folder) for folder in TARGET_RUNS}
    found = {folder: figures(run) for folder, run in runs.items() if run is not None}
    header = [
        f"{customers_text(run.customers)}, seed {run.seed}: {run.label} ({short(run.commit)})"
        if run
        else f"`{folder}`: not published"
        for folder, run in runs.items()
    ]
    lines = [
        "| target | " + " | ".join(header) + " |",
        "|---|" + "---|" * len(runs),
    ]

    def row(target: str, cell: Callable[[str, PublishedRun, dict], str | None]) -> None:
        cells = [
            (cell(folder, run, found[folder]) or "") if run else "" for folder, run in runs.items()
        ]
        lines.append(f"| {target} | " + " | ".join(cells) + " |")

    def big(run: PublishedRun) -> bool:
        return run.customers >= 10_000_000

    def each(folder, run, f):
        limit = t.TARGET_EACH_10M_MS if big(run) else t.TARGET_EACH_MS
        over = sum(1 for v in summaries.p50s(run.results) if v > limit)
        return f"worst {ms_text(f['max'])} ms, {over} over: {verdict(over == 0)}"

    row(
        f"every combination ≤ {t.TARGET_EACH_MS:.0f} ms (10M: ≤ {t.TARGET_EACH_10M_MS:.0f} ms)",
        each,
    )
    row(
        f"≥ {100 * t.TARGET_MOST_SHARE:.0f}% ≤ {t.TARGET_MOST_MS:.0f} ms (3M)",
        lambda folder, run, f: (
            None
            if big(run)
            else f"{share(f['share_15'])}: {verdict(f['share_15'] >= t.TARGET_MOST_SHARE)}"
        ),
    )
    row(
        f"plan regret median ≤ {t.TARGET_REGRET:g}, worst ≤ {t.TARGET_WORST_REGRET:g}",
        lambda folder, run, f: (
            "not measured"
            if f["plan_regret_median"] is None
            else f"{f['plan_regret_median']:.2f} / {f['plan_regret_worst']:.2f}: "
            f"{verdict(plan_regret_met(f))}"
        ),
    )
    row(
        f"SQL statements per request ≤ {t.TARGET_STATEMENTS}",
        lambda folder, run, f: (
            f"at most {f['statements']}: {verdict(f['statements'] <= t.TARGET_STATEMENTS)}"
        ),
    )
    row(
        f"counts within {t.COUNT_FACTOR:g}x of the truth for ≥ {100 * t.TARGET_COUNT_SHARE:.0f}%",
        lambda folder, run, f: (
            f"{share(f['count_share'])}: {verdict(f['count_share'] >= t.TARGET_COUNT_SHARE)}"
        ),
    )
    load = latest_generate(published, 3_000_000, tables=4)
    figure = "no published run"
    if load is not None:
        seconds, rss = float(load["total_s"]), float(load["peak_rss_mb"])
        met = seconds <= GENERATE_3M_SECONDS and rss <= GENERATE_RSS_MB
        figure = f"{seconds:.1f} s, {rss:.0f} MB ({short(load['git_commit'])}): {verdict(met)}"
    rest = " |" * (len(runs) - 1)
    lines.append(
        f"| generate_data --n 3000000 replacing 3M ≤ {GENERATE_3M_SECONDS:.0f} s, "
        f"peak RSS ≤ {GENERATE_RSS_MB} MB | {figure} |" + rest
    )
    plans = " and ".join(f"`{plan}`" for plan in HTTP_PLANS)
    lines.append(
        f"| bench_http: {plans} ≥ {HTTP_FLOOR_SHARE:g} of the floor, first page's p99 "
        f"≤ {HTTP_FIRST_PAGE_P99_MS:.0f} ms, no failure | {http_targets(published / 'http')} |"
        + rest
    )
    return lines
