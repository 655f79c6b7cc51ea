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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import run_records

from .profiling import DataProfile
from .running import Result

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
    "check",
    "db_customers",
    "postgres_version",
    "git_commit",
)

#: Upper edges (ms) of the distribution's buckets.
BUCKETS = (5, 10, 15, 25, 50, 100, 250, 500, 1000, 2000)
#: The issue's targets at 3M customers.
TARGET_EACH_MS, TARGET_MOST_MS, TARGET_MOST_SHARE = 50.0, 15.0, 0.95
#: Counts within this factor of the truth count as trustworthy.
COUNT_FACTOR = 2.0


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


def run_info(**kwargs) -> RunInfo:
    return RunInfo(
        stamp=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        version=run_records.postgres_version(),
        commit=run_records.git_commit(),
        **kwargs,
    )


def p50s(results: Sequence[Result]) -> np.ndarray:
    return np.asarray([r.stat("p50") for r in results if r.times_ms])


def summary(values: np.ndarray) -> dict[str, float]:
    """Percentiles of the per-combination p50s, and the shares under the targets."""
    if not len(values):
        return {}
    return {
        "combinations": len(values),
        "median": float(np.percentile(values, 50)),
        "p90": float(np.percentile(values, 90)),
        "p95": float(np.percentile(values, 95)),
        "p99": float(np.percentile(values, 99)),
        "max": float(values.max()),
        "share_15": float((values <= TARGET_MOST_MS).mean()),
        "share_50": float((values <= TARGET_EACH_MS).mean()),
        "over_50": int((values > TARGET_EACH_MS).sum()),
        "over_100": int((values > 100).sum()),
    }


def count_summary(results: Sequence[Result], threshold: int) -> dict[str, object]:
    """How far the API's counts are from the truth."""
    counted = [r for r in results if r.api_count is not None]
    within = [
        r
        for r in counted
        if r.count_ratio is not None and 1 / COUNT_FACTOR <= r.count_ratio <= COUNT_FACTOR
    ]
    not_exact = [
        r
        for r in counted
        if r.true_count <= threshold and (r.count_is_estimate or r.api_count != r.true_count)
    ]
    estimated = [r for r in counted if r.count_is_estimate]
    return {
        "counted": len(counted),
        "within": len(within),
        "share_within": len(within) / len(counted) if counted else math.nan,
        "estimated": len(estimated),
        "not_exact_under_threshold": not_exact,
        "worst": sorted(
            counted,
            key=lambda r: (
                abs(math.log(r.count_ratio))
                if r.count_ratio not in (None, 0, math.inf)
                else math.inf
            ),
            reverse=True,
        )[:10],
    }


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
    png_path = output / "matrix.png"
    chart(results, png_path, info)
    return {"csv": csv_path, "md": md_path, "png": png_path, "explain": explain_dir}


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _count(r: Result) -> str:
    if r.api_count is None:
        return "none"
    return f"{r.api_count:,}{' (est.)' if r.count_is_estimate else ''}"


def distribution_table(runs: Sequence[tuple[str, np.ndarray]]) -> list[str]:
    """Percentiles and buckets of per-combination p50s, one column per run."""
    sums = [summary(values) for _, values in runs]
    lines = [
        "| per-combination p50 | " + " | ".join(name for name, _ in runs) + " |",
        "|---|" + "---:|" * len(runs),
        "| combinations | " + " | ".join(str(s.get("combinations", 0)) for s in sums) + " |",
    ]
    for key, title in (
        ("median", "median"),
        ("p90", "90th percentile"),
        ("p95", "95th percentile"),
        ("p99", "99th percentile"),
        ("max", "worst"),
    ):
        lines.append(
            f"| {title} (ms) | " + " | ".join(_ms(s[key]) if s else "" for s in sums) + " |"
        )
    lines.append(
        f"| share <= {TARGET_MOST_MS:.0f} ms | "
        + " | ".join(f"{100 * s['share_15']:.1f}%" if s else "" for s in sums)
        + " |"
    )
    lines.append(
        f"| over {TARGET_EACH_MS:.0f} ms | "
        + " | ".join(str(s.get("over_50", "")) for s in sums)
        + " |"
    )
    low = 0.0
    for edge in (*BUCKETS, math.inf):
        cells = []
        for _, values in runs:
            n = int(((values > low) & (values <= edge)).sum()) if len(values) else 0
            cells.append(f"{n} ({100 * n / len(values):.0f}%)" if len(values) and n else "")
        title = f"> {low:g} ms" if edge is math.inf else f"{low:g}-{edge:g} ms"
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
        low = edge
    return lines


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
                else f"**not met** ({s['over_50']} over, worst {_ms(s['max'])} ms)"
            )
            + f"; {100 * TARGET_MOST_SHARE:.0f}% <= {TARGET_MOST_MS:.0f} ms: "
            + ("met" if s["share_15"] >= TARGET_MOST_SHARE else "**not met**")
            + f" ({100 * s['share_15']:.1f}%).",
            "",
        ]
    lines += [
        f"## The {len(worst)} worst combinations",
        "",
        "| # | p50 | p95 | request | position | matches | API count | SQL |",
        "|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for rank, r in enumerate(worst, 1):
        lines.append(
            f"| {rank} | {_ms(r.stat('p50'))} | {_ms(r.stat('p95'))} | `{_query(r)}` | "
            f"{r.page_position} | {r.true_count:,} | {_count(r)} | {r.sql_queries} |"
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
                f"`{_query(r)}`: {_count(r)} for {r.true_count:,}"
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
            f"| `{_query(r)}` | {r.true_count:,} | {_count(r)} | "
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
            f"| {_ms(r.stat('p50'))} | {_ms(r.stat('p95'))} | `{_query(r)}` | {r.page_position} | "
            f"{_count(r)} / {r.true_count:,} | {r.failure or 'ok'} |"
        )
    if refused:
        lines += ["", "## Refused orderings (checked: a 400 naming what is allowed)", ""]
        for label, failure in refused[:20]:
            lines.append(f"* `{label}`: {failure or 'ok'}")
        if len(refused) > 20:
            lines.append(f"* and {len(refused) - 20} more")
    return "\n".join(lines) + "\n"


def _query(r: Result) -> str:
    text = r.combination.label.rsplit(" @", 1)[0]
    return text if len(text) <= 110 else text[:107] + "..."


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
                f"| {name} | {len(values)} | {_ms(float(np.median(values)))} | {_ms(max(values))} |"
            )
        lines.append("")
    return lines


def chart(results: Sequence[Result], path: Path, info: RunInfo) -> None:
    """The distribution of per-combination p50s on a log scale: histogram and cumulative share."""
    compare_chart([(f"{info.label} ({info.customers:,} customers)", p50s(results))], path)


def compare_chart(runs: Sequence[tuple[str, np.ndarray]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (hist, cumulative) = plt.subplots(1, 2, figsize=(13, 5))
    everything = np.concatenate([v for _, v in runs if len(v)]) if runs else np.asarray([1.0])
    low = max(0.1, float(everything.min()) * 0.8)
    high = max(float(everything.max()) * 1.25, TARGET_EACH_MS * 1.5)
    bins = np.logspace(math.log10(low), math.log10(high), 40)
    for name, values in runs:
        if not len(values):
            continue
        hist.hist(values, bins=bins, histtype="step", linewidth=1.8, label=name)
        ordered = np.sort(values)
        cumulative.step(
            ordered, np.arange(1, len(ordered) + 1) / len(ordered), where="post", label=name
        )
    for axes in (hist, cumulative):
        axes.set_xscale("log")
        axes.axvline(TARGET_MOST_MS, color="#999", linestyle="--", linewidth=1)
        axes.axvline(TARGET_EACH_MS, color="#c44e52", linestyle="--", linewidth=1)
        axes.set_xlabel("p50 per combination (ms, log scale)")
        axes.grid(which="both", alpha=0.3)
        axes.legend(fontsize=8)
    hist.set_ylabel("combinations")
    hist.set_title("How many combinations take how long")
    cumulative.set_ylabel("share of combinations at or under")
    cumulative.axhline(TARGET_MOST_SHARE, color="#999", linestyle=":", linewidth=1)
    cumulative.set_title(f"Cumulative (dashed: {TARGET_MOST_MS:.0f} and {TARGET_EACH_MS:.0f} ms)")
    figure.suptitle("GET /api/users/: the matrix of filters x orderings x page positions")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def read_runs(csv_path: Path, runs: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """Per-combination p50s of named runs from ``matrix.csv`` (the latest run of each name)."""
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    out = []
    for name in runs:
        mine = [row for row in rows if row["run"] == name]
        if not mine:
            raise ValueError(f"no run named {name!r} in {csv_path}")
        latest = max(row["timestamp"] for row in mine)
        customers = next(row["db_customers"] for row in mine if row["timestamp"] == latest)
        values = np.asarray([float(row["p50_ms"]) for row in mine if row["timestamp"] == latest])
        out.append((f"{name} ({int(customers):,} customers)", values))
    return out
