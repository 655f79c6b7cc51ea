"""bench_matrix's charts: the distribution of one run's per-combination p50s,
and several runs' side by side (1M, 3M and 10M customers, or before and after
a change), read back from ``matrix.csv``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .reports import RunInfo, read_runs
from .running import Result
from .summaries import TARGET_EACH_MS, TARGET_MOST_MS, TARGET_MOST_SHARE, p50s


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


def named_runs(folder: Path, runs: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """Per-combination p50s of named runs in ``folder``'s CSV files (the latest
    run of each name; see :func:`.reports.read_runs`)."""
    found = {run.label: run for run in read_runs(folder)}
    out = []
    for name in runs:
        if name not in found:
            raise ValueError(f"no run named {name!r} in {folder}/matrix.csv")
        run = found[name]
        out.append((f"{name} ({run.customers:,} customers)", p50s(run.results)))
    return out
