"""The other benchmarks' tables: generate_data, bench_list, bench_http,
locust, bench_plans, the writes, and the list's tunable numbers."""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from .text import day, read_csv, share, short, verdict

#: generate_data's targets (issue 33): 3M customers replacing 3M, with the
#: read table, on a quiet machine; peak memory at any size.
GENERATE_3M_SECONDS, GENERATE_RSS_MB = 35.0, 400
#: bench_http's targets (issue 33): the API's requests per second against
#: the floor's on each of these plans, and the first page's p99.
HTTP_FLOOR_SHARE, HTTP_PLANS, HTTP_FIRST_PAGE_P99_MS = (
    0.45,
    ("initial_page", "last_name_smith"),
    25.0,
)


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

    customers = int(next(iter(optimized.values()))["db_customers"])
    if baseline and about(baseline) == about(optimized):
        runs = f"the three interleaved in one run ({about(optimized)})"
    else:
        runs = (
            f"the seed's implementation from its latest run "
            f"({about(baseline) if baseline else 'none'}), this one and the floor from "
            f"theirs ({about(optimized)})"
        )
    lines = [
        f"p50 in ms of 20 runs at {customers:,} customers through Django's test client; {runs}.",
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


def http_latest(folder: Path) -> list[dict[str, str]]:
    """The rows of the latest bench_http run published in ``folder``."""
    rows = read_csv(folder / "http_benchmarks.csv")
    stamp = max((row["timestamp"] for row in rows), default=None)
    return [row for row in rows if row["timestamp"] == stamp]


def http_median(rows: list[dict[str, str]], plan: str, target: str, column: str) -> float | None:
    """The median over a run's rounds of one plan's ``column``, the API's or the floor's."""
    values = [float(r[column]) for r in rows if r["plan"] == plan and r["target"] == target]
    return statistics.median(values) if values else None


def http_targets(folder: Path) -> str:
    """Issue 33's HTTP targets, met or not, from the latest run in ``folder``."""
    rows = http_latest(folder)
    if not rows:
        return "no published run"

    def ratio(plan: str) -> float:
        api = http_median(rows, plan, "api", "requests_per_second") or 0.0
        return api / (http_median(rows, plan, "floor", "requests_per_second") or float("inf"))

    ratios = [ratio(plan) for plan in HTTP_PLANS]
    p99 = http_median(rows, HTTP_PLANS[0], "api", "p99_ms") or float("inf")
    failed = sum(int(r["failed"]) for r in rows if r["target"] == "api")
    met = min(ratios) >= HTTP_FLOOR_SHARE and p99 <= HTTP_FIRST_PAGE_P99_MS and not failed
    return (
        f"{' and '.join(f'{r:.2f}' for r in ratios)} of the floor, p99 {p99:.1f} ms, "
        f"{failed} failed ({short(rows[0]['git_commit'])}): {verdict(met)}"
    )


def http_table(folder: Path) -> list[str]:
    rows = http_latest(folder)
    if not rows:
        return [f"No run is published in {folder.name}/."]
    stamp = rows[0]["timestamp"]
    first = rows[0]

    def median(plan: str, target: str, column: str) -> float | None:
        return http_median(rows, plan, target, column)

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


#: The "before" of the capacity and profile tables: the code before the page
#: statement was compiled once per shape and a token request's path trimmed
#: (its latest published run of each); "after" is the latest run.
BEFORE_COMMIT = "df39f27"


def http_before_after(folder: Path) -> list[str]:
    """Each plan's requests/s (and the API's p99) against the floor's, in the
    latest run of :data:`BEFORE_COMMIT` and the latest run."""
    rows = read_csv(folder / "http_benchmarks.csv")
    before_stamps = {r["timestamp"] for r in rows if r["git_commit"].startswith(BEFORE_COMMIT)}
    latest = max((r["timestamp"] for r in rows), default=None)
    if not before_stamps or latest in before_stamps:
        return [f"No run after {BEFORE_COMMIT} is published in {folder.name}/."]
    runs = [
        [row for row in rows if row["timestamp"] == stamp] for stamp in (max(before_stamps), latest)
    ]

    def ratio(run: list[dict[str, str]], plan: str) -> str:
        def median(target: str) -> float | None:
            values = [
                float(r["requests_per_second"])
                for r in run
                if r["plan"] == plan and r["target"] == target
            ]
            return statistics.median(values) if values else None

        api, low = median("api"), median("floor")
        if api is None:
            return "| | | |"
        p99 = statistics.median(
            float(r["p99_ms"]) for r in run if r["plan"] == plan and r["target"] == "api"
        )
        return f"| {api:,.0f} | {p99:.1f} | {'' if not low else f'{low:,.0f}'} | " + (
            f"{api / low:.2f}" if low else ""
        )

    (before, after) = runs
    lines = [
        f"Requests/s of the API and of the floor, before ({short(before[0]['git_commit'])}, "
        f"{day(before[0]['timestamp'])}) and after ({short(after[0]['git_commit'])}, "
        f"{day(after[0]['timestamp'])}).",
        "",
        "| plan | before: API | p99 (ms) | floor | API / floor "
        "| after: API | p99 (ms) | floor | API / floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for plan in dict.fromkeys(row["plan"] for row in after):
        lines.append(f"| {plan} {ratio(before, plan)} {ratio(after, plan)} |")
    return lines


def profile_table(published: Path) -> list[str]:
    """What one request costs the Python process (bench_profile): each
    request's latest run beside its latest of :data:`BEFORE_COMMIT`."""
    rows = read_csv(published / "profile.csv")
    if not rows:
        return ["No bench_profile run is published as CSV yet."]
    by_url: dict[str, list[dict[str, str]]] = {}
    for row in sorted(rows, key=lambda r: r["timestamp"]):
        by_url.setdefault(row["url"], []).append(row)

    def cost(row: dict[str, str] | None) -> str:
        if row is None:
            return " | "
        return f"{float(row['cpu_ms']):.2f} | {row['instructions_m'] or ''}"

    lines = [
        "| request | before: CPU (ms) | instructions (M) | after: CPU (ms) | instructions (M) "
        "| its JSON: Python / PostgreSQL (ms) | its statement: client / server / prepared (ms) |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    commits: dict[str, set[str]] = {"before": set(), "after": set()}
    for url, runs in by_url.items():
        after = runs[-1]
        before = next(
            (r for r in reversed(runs) if r["git_commit"].startswith(BEFORE_COMMIT)), None
        )
        commits["after"].add(short(after["git_commit"]))
        if before is not None:
            commits["before"].add(short(before["git_commit"]))
        json_text = (
            f"{float(after['json_python_ms']):.2f} / {float(after['json_database_ms']):.2f}"
            if after["json_python_ms"]
            else ""
        )
        bound = (
            " / ".join(
                f"{float(after[f'bound_{w}_ms']):.2f}" for w in ("client", "server", "prepared")
            )
            if after["bound_client_ms"]
            else ""
        )
        lines.append(f"| `{url}` | {cost(before)} | {cost(after)} | {json_text} | {bound} |")
    lines += [
        "",
        f"Before: {', '.join(sorted(commits['before'])) or 'none'}; "
        f"after: {', '.join(sorted(commits['after']))} (docs/benchmarks/profile.csv).",
    ]
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


#: bench_writes' measures (a pattern; the count it holds is the size) as the
#: table names them, in its order.
WRITE_MEASURES = (
    (r"patch_p50_ms", "PATCH p50 (ms)"),
    (r"update_(\d+)_records_s", "UPDATE of {:,} loyalty records (s)"),
    (r"bulk_update_api_(\d+)_s", "POST bulk-update, {:,} customers (s)"),
    (r"import_(\d+)_rows_s", "import of {:,} rows, half new (s)"),
    (r"import_again_(\d+)_rows_s", "the same {:,} rows again: nothing to change (s)"),
    (r"import_peak_rss_mb", "the import's peak RSS (MB)"),
    (r"list_p50_idle_ms", "list p50, idle (ms)"),
    (r"list_p50_beside_import_ms", "list p50 beside the import (ms)"),
)
FLOOR = "no trigger (floor)"
#: A measure's size and unit (``import_1000000_rows_s``: ``_1000000_rows_s``).
SIZE_AND_UNIT = re.compile(r"(_\d+)?(_rows|_records)?(_s|_ms|_mb)?$")
#: Issue 31's targets: the floor is the UPDATE's with no trigger, in the same run.
UPDATE_OVER_FLOOR, BULK_OVER_FLOOR = 2.0, 1.5
IMPORT_SECONDS, IMPORT_AGAIN_SECONDS, IMPORT_RSS_MB, BESIDE_OVER_IDLE = 60.0, 20.0, 400, 2.0


def write_targets(value: Callable[..., float | None]) -> dict[str, str]:
    """Each measure's target, met or not, from the run's figures (``value``:
    a measure's by its name without size and unit, every trigger on; with
    ``floor=True``, with none)."""

    def mark(text: str, met: bool) -> str:
        return f"{text}: {verdict(met)}"

    floor = value("update", floor=True)
    targets = {}
    if (update := value("update")) and floor:
        targets["update"] = mark(
            f"≤ {UPDATE_OVER_FLOOR:g}x the floor", update <= UPDATE_OVER_FLOOR * floor
        )
    if (bulk := value("bulk_update_api")) and floor:
        targets["bulk_update_api"] = mark(
            f"≤ {BULK_OVER_FLOOR:g}x the UPDATE's floor ({bulk / floor:.1f}x)",
            bulk <= BULK_OVER_FLOOR * floor,
        )
    if (seconds := value("import")) is not None:
        targets["import"] = mark(f"≤ {IMPORT_SECONDS:.0f} s", seconds <= IMPORT_SECONDS)
    if (again := value("import_again")) is not None:
        changes = value("import_again_changes") or 0
        targets["import_again"] = mark(
            f"≤ {IMPORT_AGAIN_SECONDS:.0f} s, 0 changes ({changes:.0f})",
            again <= IMPORT_AGAIN_SECONDS and not changes,
        )
    if (rss := value("import_peak_rss")) is not None:
        targets["import_peak_rss"] = mark(f"≤ {IMPORT_RSS_MB} MB", rss <= IMPORT_RSS_MB)
    idle, beside = value("list_p50_idle"), value("list_p50_beside_import")
    if idle and beside is not None:
        errors = value("list_5xx_beside_import") or 0
        targets["list_p50_beside_import"] = mark(
            f"≤ {BESIDE_OVER_IDLE:g}x idle, no 5xx ({errors:.0f})",
            beside <= BESIDE_OVER_IDLE * idle and not errors,
        )
    return targets


def writes_table(published: Path) -> list[str]:
    """The latest bench_writes run (``writes/writes.csv``), one row a measure,
    one column a variant of the triggers, how far all of them are above the
    floor, and issue 31's target, met or not."""
    rows = read_csv(published / "writes" / "writes.csv")
    if not rows:
        return ["No write benchmark is published yet."]
    latest = max(row["at"] for row in rows)
    run = [row for row in rows if row["at"] == latest]
    variants = ["all triggers", "without history", FLOOR]
    values = {(row["measure"], row["variant"] or "all triggers"): row["value"] for row in run}
    first = run[0]
    lines = [
        f"{int(first['customers']):,} customers, PostgreSQL {first['postgresql']} "
        f"({short(first['commit'])}, {day(first['at'])}, 1-minute load "
        f"{first['load_average_1m']}):",
        "",
        "| | " + " | ".join(variants) + " | all / floor | target |",
        "|---|" + "---:|" * (len(variants) + 1) + "---|",
    ]
    measures = list(dict.fromkeys(row["measure"] for row in run))

    def value(name: str, floor: bool = False) -> float | None:
        measure = next((m for m in measures if SIZE_AND_UNIT.sub("", m) == name), None)
        cell = values.get((measure, FLOOR if floor else "all triggers"), "")
        return float(cell) if cell else None

    targets = write_targets(value)
    for pattern, label in WRITE_MEASURES:
        measure = next((m for m in measures if re.fullmatch(pattern, m)), None)
        if measure is None:
            continue
        label = label.format(*(int(n) for n in re.fullmatch(pattern, measure).groups()))
        cells = [values.get((measure, variant), "") for variant in variants]
        ratio = ""
        if cells[0] and cells[-1]:
            ratio = f"{float(cells[0]) / float(cells[-1]):.1f}x"
        shown = [f"{float(cell):,.2f}" if cell else "" for cell in cells]
        target = targets.get(SIZE_AND_UNIT.sub("", measure), "")
        lines.append(f"| {label} | " + " | ".join(shown) + f" | {ratio} | {target} |")
    return lines


def history_table(published: Path) -> list[str]:
    """The latest bench_history run (``history/history.csv``)."""
    rows = read_csv(published / "history" / "history.csv")
    if not rows:
        return ["No history benchmark is published yet."]
    row = max(rows, key=lambda r: r["at"])
    return [
        "| events in all | a customer's history page, p50 (ms) | an erasure, p50 (ms) "
        "| an event of one changed field (bytes) | table and indexes per event (bytes) "
        "| run |",
        "|---:|---:|---:|---:|---:|---|",
        f"| {int(row['events']):,} | {row['history_page_ms']} | {row['erase_ms']} "
        f"| {row['event_row_bytes']} | {row['bytes_per_event']} "
        f"| {short(row['commit'])}, {day(row['at'])}, PostgreSQL {row['postgresql']} |",
    ]


# -- the list's tunable numbers ------------------------------------------------------

#: The module of every tunable number the list's choices use.
TUNABLE_MODULES = ("core/customers/tunables.py",)
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
