"""The README's benchmark tables, made from the published CSV files, so that
no figure in them can drift from the run it quotes.

A table sits in a Markdown file between two comments::

    <!-- table:matrix-3m -->
    | … the table …
    <!-- /table -->

and :func:`regenerate` rewrites what is between them from the files in
``docs/benchmarks/`` (:data:`core.run_records.PUBLISHED_DIR`). ``python
manage.py readme_tables`` rewrites every file of :data:`FILES` that way (after
a run is published); ``--check`` only says whether they are current, and a
test runs it. The tables:

* ``matrix-<size>``: every ``docs/benchmarks/matrix-<size>/`` folder, one row
  per run label, the latest run of each (a new label is a new row);
* ``matrix-summary``: the last two labels of every matrix folder (before and
  after), and ``matrix-now``: the last label of each;
* ``list-targets``: the list's targets (:mod:`bench.matrix.summaries`), each
  met or not with its figure from the latest runs;
* ``bench-list``: the seed's implementation against this one and the floor
  (bench_list); ``http``, ``http-pgbouncer`` (bench_http); ``locust``;
  ``generate`` (generate_data); ``plans`` (bench_plans); ``writes`` (any CSV
  in ``docs/benchmarks/writes/``).
"""

from __future__ import annotations

import csv
import os
import re
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.conf import settings

from bench.matrix import summaries
from bench.matrix.reports import PublishedRun, read_runs
from bench.matrix.summaries import ms_text
from core import run_records

#: The files whose tables the command keeps, relative to the checkout.
FILES = (
    "README.md",
    "docs/list-query.md",
    "docs/benchmarks/README.md",
    "docs/database.md",
    "docs/scaling.md",
)

BLOCK = re.compile(
    r"(?P<open><!-- table:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(?P<close><!-- /table -->)",
    re.DOTALL,
)


class UnknownTable(ValueError):
    """A marker names a table this module does not make."""


def regenerate(text: str, *, where: str = ".", published: Path | None = None) -> str:
    """``text`` with every table between markers made afresh from ``published``;
    ``where`` is the folder of the file ``text`` is, relative to the checkout
    (the tables' links to ``docs/benchmarks/`` are relative to it)."""
    folder = published or run_records.PUBLISHED_DIR
    link = os.path.relpath(PUBLISHED_LINK, where)
    link = "" if link == "." else link + "/"

    def table(match: re.Match) -> str:
        lines = [line.replace(f"]({LINK}/", f"]({link}") for line in make(match["name"], folder)]
        return match["open"] + "".join(line + "\n" for line in lines) + match["close"]

    return BLOCK.sub(table, text)


#: Where the published files are, relative to the checkout, and how the
#: tables' links name it until :func:`regenerate` makes them relative.
PUBLISHED_LINK, LINK = "docs/benchmarks", "@published"


def make(name: str, published: Path) -> list[str]:
    """The lines of the table ``name``."""
    if name in TABLES:
        return TABLES[name](published)
    if name.startswith("matrix-"):
        if not (published / name).is_dir():
            return [f"No run is published in `{name}/` yet."]
        return matrix_table(published / name)
    raise UnknownTable(f"no table named {name!r} (see bench.readme_tables)")


def short(commit: str) -> str:
    """A commit as the tables show it: 7 hex digits (and ``-dirty`` if so)."""
    head, dirty, _ = commit.partition("-dirty")
    return f"`{head[:7]}{dirty}`"


def day(stamp: str) -> str:
    return stamp[:10]


def share(value: float) -> str:
    return f"{100 * value:.1f}%"


def customers_text(n: int) -> str:
    """3,000,000 as 3M."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n:,}"


# -- bench_matrix -------------------------------------------------------------------


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
        f"([`matrix.md`](@published/{folder.name}/matrix.md) is the latest run's report).",
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
                f"| [{data}](@published/{folder.name}/matrix.md) | {run_text(run)} "
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


def regret_met(f: dict[str, object]) -> bool:
    return (
        f["regret_median"] <= summaries.TARGET_REGRET
        and f["regret_worst"] <= summaries.TARGET_WORST_REGRET
    )


def verdict(met: bool) -> str:
    return "met" if met else "**not met**"


#: The runs the list's targets are judged on: the latest of each folder.
TARGET_RUNS = ("matrix-3m", "matrix-3m-seed2", "matrix-10m")


def list_targets(published: Path) -> list[str]:
    """The list's targets, a row each, met or not with the figure of the latest
    run of each folder of :data:`TARGET_RUNS` (a column each), and generate_data's."""
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
        f"median ≤ {t.TARGET_MEDIAN_MS:.0f} ms (3M, a quiet machine)",
        lambda folder, run, f: (
            None
            if big(run)
            else f"{ms_text(f['median'])} ms: {verdict(f['median'] <= t.TARGET_MEDIAN_MS)}"
        ),
    )
    row(
        f"regret median ≤ {t.TARGET_REGRET:g}, worst ≤ {t.TARGET_WORST_REGRET:g}",
        lambda folder, run, f: (
            "not measured"
            if f["regret_median"] is None
            else f"{regret_text(f)}: {verdict(regret_met(f))}"
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
    three = found.get("matrix-3m")

    def cursor(folder, run, f):
        if not big(run) or three is None or f["cursor_median"] is None:
            return None
        slower = f["cursor_median"] > three["cursor_median"]
        return (
            f"median {ms_text(f['cursor_median'])} ms against {ms_text(three['cursor_median'])} "
            f"at 3M: {verdict(not slower)}"
        )

    row("cursor pages no slower than at 3M (10M)", cursor)
    load = latest_generate(published, 3_000_000, tables=4)
    figure = "no published run"
    if load is not None:
        seconds, rss = float(load["total_s"]), float(load["peak_rss_mb"])
        met = seconds <= GENERATE_3M_SECONDS and rss <= GENERATE_RSS_MB
        figure = f"{seconds:.1f} s, {rss:.0f} MB ({short(load['git_commit'])}): {verdict(met)}"
    lines.append(
        f"| generate_data --n 3000000 with the read table ≤ {GENERATE_3M_SECONDS:.0f} s, "
        f"peak RSS ≤ {GENERATE_RSS_MB} MB | {figure} |" + " |" * (len(runs) - 1)
    )
    return lines


#: generate_data's targets: 3M customers with the read table, peak memory at any size.
GENERATE_3M_SECONDS, GENERATE_RSS_MB = 40.0, 400


# -- generate_data --------------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def tables_loaded(row: dict[str, str]) -> int:
    """How many tables a load wrote: its rows (rows/s times seconds) per customer
    (three of record, four with the list's read table)."""
    return round(float(row["rows_per_s"]) * float(row["total_s"]) / int(row["n"]))


def latest_generate(published: Path, n: int, tables: int) -> dict[str, str] | None:
    rows = [
        row
        for row in read_csv(published / "generate_benchmarks.csv")
        if int(row["n"]) == n
        and tables_loaded(row) == tables
        and row["postgres_version"][:2] == "18"
    ]
    return max(rows, key=lambda row: row["timestamp"]) if rows else None


def generate_table(published: Path) -> list[str]:
    """The latest load of each size, server and number of tables."""
    return generate_rows(published, lambda row: (tables_loaded(row),))


def generate_now(published: Path) -> list[str]:
    """The latest load of each size on PostgreSQL 18, whatever it wrote."""
    return generate_rows(published, lambda row: (), versions="18")


def generate_rows(
    published: Path, kind: Callable[[dict[str, str]], tuple], versions: str = ""
) -> list[str]:
    rows = [
        row
        for row in read_csv(published / "generate_benchmarks.csv")
        if row["postgres_version"].startswith(versions)
    ]
    newest: dict[tuple, dict[str, str]] = {}
    for row in rows:
        key = (int(row["n"]), row["postgres_version"].split()[0], *kind(row))
        if key not in newest or row["timestamp"] > newest[key]["timestamp"]:
            newest[key] = row
    lines = [
        "| customers | PostgreSQL | tables | total (s) | generate (s) | copy (s) | build (s) "
        "| swap + drop (s) | index builds, busy (s) | rows/s | peak RSS (MB) | commit |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (n, version, *_), row in sorted(newest.items()):
        tables = tables_loaded(row)
        lines.append(
            f"| {n:,} | {version} | {tables} | {float(row['total_s']):.1f} "
            f"| {float(row['generate_s']):.1f} | {float(row['copy_s']):.1f} "
            f"| {float(row['build_s']):.1f} "
            f"| {float(row['swap_s']) + float(row['drop_s']):.1f} "
            f"| {float(row['index_busy_s']):.1f} | {int(float(row['rows_per_s'])):,} "
            f"| {float(row['peak_rss_mb']):.0f} | {short(row['git_commit'])}, "
            f"{day(row['timestamp'])} |"
        )
    return lines


# -- bench_list -----------------------------------------------------------------------


def list_runs(published: Path) -> list[dict[str, str]]:
    """Every bench_list row published (the 3M runs: docs/benchmarks and list-3m)."""
    return read_csv(published / "benchmarks.csv") + read_csv(
        published / "list-3m" / "benchmarks.csv"
    )


def latest_variant(rows: list[dict[str, str]], variant: str) -> list[dict[str, str]]:
    """The rows of ``variant`` in the latest run that has it."""
    mine = [row for row in rows if row["variant"] == variant]
    if not mine:
        return []
    stamp = max(row["timestamp"] for row in mine)
    return [row for row in mine if row["timestamp"] == stamp]


def speedup(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio < 10 else f"{ratio:.0f}x"


def bench_list(published: Path) -> list[str]:
    """The seed's implementation (baseline) against this one and the floor."""
    rows = list_runs(published)
    baseline = {row["label"]: row for row in latest_variant(rows, "baseline")}
    optimized = {row["label"]: row for row in latest_variant(rows, "optimized")}
    floor = {row["label"]: row for row in latest_variant(rows, "floor")}
    if not optimized:
        return ["No bench_list run is published."]

    def about(run: dict[str, dict[str, str]]) -> str:
        row = next(iter(run.values()))
        return f"{short(row['git_commit'])}, {day(row['timestamp'])}"

    lines = [
        f"p50 in ms of 20 runs at {int(next(iter(optimized.values()))['db_customers']):,} "
        f"customers through Django's test client; the seed's implementation from its latest "
        f"run ({about(baseline) if baseline else 'none'}), this one and the floor from "
        f"theirs ({about(optimized)}).",
        "",
        "| scenario | request | seed's implementation | this one | floor | speedup |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, row in optimized.items():
        mine = float(row["p50_ms"])
        seed = float(baseline[label]["p50_ms"]) if label in baseline else None
        low = float(floor[label]["p50_ms"]) if label in floor else None
        request = row["url"].removeprefix("/api/users/") or "(first page)"
        if len(request) > 60:
            request = request[:57] + "..."
        lines.append(
            f"| {label} | `{request}` | {'' if seed is None else f'{seed:.2f}'} | {mine:.2f} "
            f"| {'' if low is None else f'{low:.2f}'} "
            f"| {'' if seed is None else speedup(seed / mine)} |"
        )
    return lines


# -- bench_http ---------------------------------------------------------------------


def http_table(folder: Path) -> list[str]:
    rows = read_csv(folder / "http_benchmarks.csv")
    if not rows:
        return [f"No run is published in {folder.name}/."]
    stamp = max(row["timestamp"] for row in rows)
    rows = [row for row in rows if row["timestamp"] == stamp]
    first = rows[0]

    def median(plan: str, target: str, column: str) -> float | None:
        values = [float(r[column]) for r in rows if r["plan"] == plan and r["target"] == target]
        return statistics.median(values) if values else None

    lines = [
        f"{first['generator']}, {first['connections']} connections, "
        f"{first['workers']} gunicorn workers behind {first['proxy']}"
        + (f" and {first['pooler']}" if first["pooler"] != "none" else "")
        + f", {int(first['db_customers']):,} customers, median of "
        f"{max(int(r['round']) for r in rows)} rounds "
        f"({short(first['git_commit'])}, {day(stamp)}).",
        "",
        "| plan | API requests/s | p50 (ms) | p95 (ms) | p99 (ms) | floor requests/s "
        "| floor p99 (ms) | API / floor | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for plan in dict.fromkeys(row["plan"] for row in rows):
        api, low = (
            median(plan, "api", "requests_per_second"),
            median(plan, "floor", "requests_per_second"),
        )
        low_p99 = median(plan, "floor", "p99_ms")
        failed = sum(int(r["failed"]) for r in rows if r["plan"] == plan)
        lines.append(
            f"| {plan} | {api:,.0f} | {median(plan, 'api', 'p50_ms'):.1f} "
            f"| {median(plan, 'api', 'p95_ms'):.1f} | {median(plan, 'api', 'p99_ms'):.1f} "
            f"| {'' if low is None else f'{low:,.0f}'} "
            f"| {'' if low_p99 is None else f'{low_p99:.1f}'} "
            f"| {'' if not low else f'{api / low:.2f}'} | {failed} |"
        )
    return lines


def locust_table(published: Path) -> list[str]:
    rows = read_csv(published / "load.csv")
    lines = [
        "| clients | invalid requests | requests/s | p50 (ms) | p95 (ms) | p99 (ms) | failures "
        "| 5xx | commit |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['users']} | {share(float(row['invalid_share']))} "
            f"| {float(row['requests_per_second']):.0f} | {float(row['p50_ms']):.0f} "
            f"| {float(row['p95_ms']):.0f} | {float(row['p99_ms']):.0f} | {row['failures']} "
            f"| {row['server_errors']} | {short(row['git_commit'])}, {day(row['timestamp'])} |"
        )
    return lines


# -- bench_plans, writes ----------------------------------------------------------------


def plans_table(published: Path) -> list[str]:
    rows = read_csv(published / "plans" / "plans.csv")
    if not rows:
        return ["No bench_plans run is published."]
    row = max(rows, key=lambda r: r["at"])
    costs = [name for name in row if name.endswith("_us")]
    return [
        f"Microseconds per row at {int(row['customers']):,} customers "
        f"({short(row['commit'])}, {day(row['at'])}):",
        "",
        "| " + " | ".join(f"`{name}`" for name in costs) + " |",
        "|" + "---:|" * len(costs),
        "| " + " | ".join(row[name] for name in costs) + " |",
    ]


def writes_table(published: Path) -> list[str]:
    """Every CSV in docs/benchmarks/writes/, its rows as they are."""
    folder = published / "writes"
    paths = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if not paths:
        return ["No write benchmark is published yet (docs/benchmarks/writes/)."]
    lines: list[str] = []
    for path in paths:
        rows = read_csv(path)
        if not rows:
            continue
        columns = list(rows[0])
        lines += [
            f"`writes/{path.name}`:",
            "",
            "| " + " | ".join(columns) + " |",
            "|" + "---|" * len(columns),
            *("| " + " | ".join(row[c] for c in columns) + " |" for row in rows),
            "",
        ]
    return lines[:-1] if lines else ["No write benchmark is published yet."]


# -- the list's tunable numbers ------------------------------------------------------

#: The modules whose tunable numbers the list's choices use.
TUNABLE_MODULES = ("core/customers/plans.py", "core/customers/sample.py", "core/customers/known.py")
CONSTANT = re.compile(r"((?:^#: .*\n)+)^([A-Z][A-Z0-9_]*) = (.+)$", re.MULTILINE)


def tunables(published: Path) -> list[str]:
    """Every documented constant (a ``#:`` comment, then ``NAME = value``) of
    the list's planning modules, with the first clause of its comment."""
    lines = ["| constant | value | what it is |", "|---|---:|---|"]
    for module in TUNABLE_MODULES:
        source = (Path(settings.BASE_DIR) / module).read_text(encoding="utf-8")
        for comment, name, value in CONSTANT.findall(source):
            text = " ".join(line.removeprefix("#: ").strip() for line in comment.splitlines())
            first = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", first_clause(text))
            lines.append(f"| `{Path(module).stem}.{name}` | `{value}` | {first} |")
    return lines


def first_clause(text: str) -> str:
    """``text`` up to its first ": ", "; " or ". " outside parentheses."""
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and text[i : i + 2] in (": ", "; ", ". "):
            return text[:i]
    return text.rstrip(".")


TABLES: dict[str, Callable[[Path], list[str]]] = {
    "tunables": tunables,
    "matrix-summary": matrix_summary,
    "matrix-now": matrix_now,
    "list-targets": list_targets,
    "bench-list": bench_list,
    "http": lambda published: http_table(published / "http"),
    "http-pgbouncer": lambda published: http_table(published / "http-pgbouncer"),
    "locust": locust_table,
    "generate": generate_table,
    "generate-now": generate_now,
    "plans": plans_table,
    "writes": writes_table,
}
