"""bench_matrix's reports: a CSV row per combination, a Markdown report, charts of the distribution.

Written like bench_list's (:mod:`bench.reports`): ``matrix.csv`` gains rows
run after run (each row carries its run's timestamp, label, seed, data size,
server version and commit), ``matrix.md`` and ``matrix.png`` describe the
latest run, and ``matrix-explain/`` holds ``EXPLAIN (ANALYZE, BUFFERS)`` of
the worst combinations. :func:`compare_chart` draws several runs' distributions
side by side (1M, 3M and 10M customers, or before and after a change).
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import run_records

from .profiling import DataProfile
from .running import Result
from .summaries import (
    COUNT_FACTOR,
    TARGET_EACH_MS,
    TARGET_MOST_MS,
    TARGET_MOST_SHARE,
    count_summary,
    count_text,
    distribution_table,
    ms_text,
    p50s,
    query_text,
    regret_lines,
    summary,
)

CSV_COLUMNS = (
    "timestamp",
    "run",
    "seed",
    "combination",
    "shape",
    "bands",
    "filters",
    "search",
    "ordering",
    "position",
    "url",
    "status",
    "p50_ms",
    "p95_ms",
    "min_ms",
    "max_ms",
    "repeat",
    "rows",
    "true_count",
    "api_count",
    "count_is_estimate",
    "count_ratio",
    "sql_queries",
    "chosen_ms",
    "walk_ms",
    "sort_ms",
    "regret",
    "plan_regret",
    "check",
    "db_customers",
    "postgres_version",
    "git_commit",
)


@dataclass(frozen=True)
class RunInfo:
    label: str
    seed: int
    repeat: int
    warmup: int
    customers: int
    exact_threshold: int
    stamp: str
    version: str
    commit: str


@dataclass(frozen=True)
class PublishedRun:
    """A run read back from the CSV rows it wrote: its facts, and each
    combination as a :class:`Result` (without its :class:`Combination`: the
    URL says what it asked) that the summaries take as they take a live run's."""

    label: str
    stamp: str
    seed: int
    customers: int
    version: str
    commit: str
    results: list[Result]


#: matrix.csv, and the files an older header left beside it (matrix.1.csv, …;
#: see core.run_records.append_csv).
CSV_FILES = re.compile(r"matrix(\.\d+)?\.csv")


def read_runs(folder: Path) -> list[PublishedRun]:
    """Every run label in ``folder``'s CSV files, the latest run of each, oldest first."""
    rows = []
    for path in sorted(folder.iterdir()):
        if CSV_FILES.fullmatch(path.name):
            with path.open(newline="", encoding="utf-8") as f:
                rows += list(csv.DictReader(f))
    latest: dict[str, str] = {}
    for row in rows:
        latest[row["run"]] = max(latest.get(row["run"], ""), row["timestamp"])
    runs = []
    for label, stamp in sorted(latest.items(), key=lambda item: (item[1], item[0])):
        mine = [row for row in rows if row["run"] == label and row["timestamp"] == stamp]
        first = mine[0]
        runs.append(
            PublishedRun(
                label=label,
                stamp=stamp,
                seed=int(first["seed"]),
                customers=int(first["db_customers"]),
                version=first["postgres_version"],
                commit=first["git_commit"],
                results=[result_from_row(row) for row in mine],
            )
        )
    return runs


def result_from_row(row: dict[str, str]) -> Result:
    """A combination's :class:`Result` as its CSV row has it."""

    def number(name: str) -> float:
        value = row.get(name) or ""
        return float(value) if value else math.nan

    p50 = number("p50_ms")
    return Result(
        combination=None,  # type: ignore[arg-type]
        url=row["url"],
        page_position=row["position"],
        true_count=int(row["true_count"]),
        times_ms=[] if math.isnan(p50) else [p50],
        status=int(row["status"]),
        rows=int(row["rows"]),
        api_count=int(row["api_count"]) if row["api_count"] else None,
        count_is_estimate=row["count_is_estimate"] == "True",
        sql_queries=int(row["sql_queries"]),
        failure=None if row["check"] == "ok" else row["check"],
        chosen_ms=number("chosen_ms"),
        walk_ms=number("walk_ms"),
        sort_ms=number("sort_ms"),
    )


def run_info(**kwargs) -> RunInfo:
    return RunInfo(
        stamp=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        version=run_records.postgres_version(),
        commit=run_records.git_commit(),
        **kwargs,
    )


def write_reports(
    results: Sequence[Result],
    refused: Sequence[tuple[str, str | None]],
    profile: DataProfile,
    info: RunInfo,
    *,
    output: Path,
    worst: Sequence[Result],
) -> dict[str, Path]:
    output.mkdir(parents=True, exist_ok=True)
    csv_path = output / "matrix.csv"
    for number, r in enumerate(results, 1):
        c = r.combination
        run_records.append_csv(
            csv_path,
            CSV_COLUMNS,
            {
                "timestamp": info.stamp,
                "run": info.label,
                "seed": info.seed,
                "combination": number,
                "shape": c.shape,
                "bands": c.bands,
                "filters": "&".join(f.label for f in c.filters),
                "search": c.search.text if c.search else "",
                "ordering": c.ordering,
                "position": r.page_position,
                "url": r.url,
                "status": r.status,
                "p50_ms": round(r.stat("p50"), 3),
                "p95_ms": round(r.stat("p95"), 3),
                "min_ms": round(r.stat("min"), 3),
                "max_ms": round(r.stat("max"), 3),
                "repeat": len(r.times_ms),
                "rows": r.rows,
                "true_count": r.true_count,
                "api_count": "" if r.api_count is None else r.api_count,
                "count_is_estimate": r.count_is_estimate,
                "count_ratio": "" if r.count_ratio is None else round(r.count_ratio, 3),
                "sql_queries": r.sql_queries,
                "chosen_ms": round(r.chosen_ms, 3),
                "walk_ms": round(r.walk_ms, 3),
                "sort_ms": round(r.sort_ms, 3),
                "regret": round(r.regret, 3),
                "plan_regret": round(r.plan_regret, 3),
                "check": r.failure or "ok",
                "db_customers": info.customers,
                "postgres_version": info.version,
                "git_commit": info.commit,
            },
        )
    explain_dir = output / "matrix-explain"
    explain_dir.mkdir(exist_ok=True)
    for old in explain_dir.glob("worst-*.txt"):
        old.unlink()
    for rank, r in enumerate(worst, 1):
        (explain_dir / f"worst-{rank:02d}.txt").write_text(
            f"-- p50 {r.stat('p50'):.2f} ms, p95 {r.stat('p95'):.2f} ms, "
            f"{r.true_count:,} matching customers, {r.page_position}\n{r.explain}"
        )
    md_path = output / "matrix.md"
    md_path.write_text(markdown(results, refused, profile, info, worst))
    return {"csv": csv_path, "md": md_path, "explain": explain_dir}


def markdown(results, refused, profile: DataProfile, info: RunInfo, worst) -> str:
    values = p50s(results)
    s = summary(values)
    failures = [r for r in results if r.failure]
    refusal_failures = [(label, f) for label, f in refused if f]
    counts = count_summary(results, info.exact_threshold)
    lines = [
        f"# bench_matrix: {info.customers:,} customers, PostgreSQL {info.version}, "
        f"commit {info.commit}",
        "",
        f"{info.stamp}; run {info.label!r}, seed {info.seed}: {len(results)} combinations of "
        f"filters, orderings and page positions, each timed {info.repeat} times (after "
        f"{info.warmup} warm-up round{'s' if info.warmup != 1 else ''}) in rounds of a "
        "shuffled order through Django's test client; milliseconds.",
        "",
        f"Answers: {len(results) - len(failures)} of {len(results)} right"
        + (f", **{len(failures)} wrong** (see the check column)" if failures else "")
        + f"; {len(refused)} refused orderings answered a 400 that says what is allowed"
        + (f" (**{len(refusal_failures)} did not**)" if refusal_failures else "")
        + ".",
        "",
        "## Distribution of the per-combination p50",
        "",
        *distribution_table([(info.label, values)]),
        "",
    ]
    if s:
        lines += [
            f"Targets: every combination <= {TARGET_EACH_MS:.0f} ms: "
            + (
                "met"
                if s["over_50"] == 0
                else f"**not met** ({s['over_50']} over, worst {ms_text(s['max'])} ms)"
            )
            + f"; {100 * TARGET_MOST_SHARE:.0f}% <= {TARGET_MOST_MS:.0f} ms: "
            + ("met" if s["share_15"] >= TARGET_MOST_SHARE else "**not met**")
            + f" ({100 * s['share_15']:.1f}%).",
            "",
        ]
    lines += regret_lines(results)
    lines += [
        f"## The {len(worst)} worst combinations",
        "",
        "| # | p50 | p95 | request | position | matches | API count | SQL | regret |",
        "|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for rank, r in enumerate(worst, 1):
        lines.append(
            f"| {rank} | {ms_text(r.stat('p50'))} | {ms_text(r.stat('p95'))} | `{query_text(r)}` | "
            f"{r.page_position} | {r.true_count:,} | {count_text(r)} | {r.sql_queries} | "
            f"{r.regret:.2f} |"
        )
    lines += [
        "",
        "`EXPLAIN (ANALYZE, BUFFERS)` of each request's list queries: "
        "`matrix-explain/worst-NN.txt`.",
        "",
        "## Counts against the truth",
        "",
        f"`count=estimated` (the default) against a plain `COUNT(*)`: "
        f"{counts['within']} of {counts['counted']} combinations "
        f"({100 * counts['share_within']:.1f}%) within {COUNT_FACTOR:g}x of the true count; "
        f"{counts['estimated']} were estimates. Exact whenever fewer than "
        f"{info.exact_threshold:,} customers match: "
        + (
            "yes."
            if not counts["not_exact_under_threshold"]
            else f"**no, {len(counts['not_exact_under_threshold'])} combinations** "
            + "("
            + "; ".join(
                f"`{query_text(r)}`: {count_text(r)} for {r.true_count:,}"
                for r in counts["not_exact_under_threshold"][:5]
            )
            + ")."
        ),
        "",
        "The furthest off:",
        "",
        "| request | matches | API count | ratio |",
        "|---|---:|---:|---:|",
    ]
    for r in counts["worst"]:
        ratio = r.count_ratio
        lines.append(
            f"| `{query_text(r)}` | {r.true_count:,} | {count_text(r)} | "
            f"{'inf' if ratio == math.inf else f'{ratio:.2f}'} |"
        )
    lines += ["", "## By dimension", ""]
    lines += _by_dimension(results)
    lines += [
        "",
        "## Values read off the data",
        "",
        "| filter | band | value | matches |",
        "|---|---|---|---:|",
    ]
    for v in profile.values:
        lines.append(f"| {v.name} | {v.band} | `{v.value}` | {v.matches:,} |")
    for sv in profile.searches:
        lines.append(f"| search | {sv.band} | `{sv.text}` | {sv.matches:,} |")
    if profile.missing:
        lines += [
            "",
            "No value in the data falls in these bands: " + ", ".join(profile.missing) + ".",
        ]
    lines += [
        "",
        "## Every combination",
        "",
        "Slowest first. The count column shows the API's count (est. = an estimate) "
        "and, after the slash, the true count.",
        "",
        "| p50 | p95 | request | position | count / truth | check |",
        "|---:|---:|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: -r.stat("p50") if r.times_ms else 0):
        lines.append(
            f"| {ms_text(r.stat('p50'))} | {ms_text(r.stat('p95'))} | `{query_text(r)}` | "
            f"{r.page_position} | {count_text(r)} / {r.true_count:,} | {r.failure or 'ok'} |"
        )
    if refused:
        lines += ["", "## Refused orderings (checked: a 400 naming what is allowed)", ""]
        for label, failure in refused[:20]:
            lines.append(f"* `{label}`: {failure or 'ok'}")
        if len(refused) > 20:
            lines.append(f"* and {len(refused) - 20} more")
    return "\n".join(lines) + "\n"


def _by_dimension(results: Sequence[Result]) -> list[str]:
    groups: dict[str, dict[str, list[float]]] = {
        "filter": {},
        "ordering": {},
        "position": {},
        "shape": {},
    }
    for r in results:
        if not r.times_ms:
            continue
        p50 = r.stat("p50")
        c = r.combination
        for f in c.filters:
            groups["filter"].setdefault(f"{f.name} ({f.band})", []).append(p50)
        if c.search:
            groups["filter"].setdefault(f"search ({c.search.band})", []).append(p50)
        if not c.filters and not c.search:
            groups["filter"].setdefault("(none)", []).append(p50)
        key = c.ordering or "(default)"
        groups["ordering"].setdefault("multi-field" if "," in key else key, []).append(p50)
        groups["position"].setdefault(c.position, []).append(p50)
        groups["shape"].setdefault(c.shape, []).append(p50)
    lines = []
    for dimension, buckets in groups.items():
        lines += [f"| {dimension} | n | median p50 | worst p50 |", "|---|---:|---:|---:|"]
        for name in sorted(buckets, key=lambda n: -max(buckets[n])):
            values = buckets[name]
            lines.append(
                f"| {name} | {len(values)} | {ms_text(float(np.median(values)))} | "
                f"{ms_text(max(values))} |"
            )
        lines.append("")
    return lines
