"""bench_writes: what writes cost with the read table's and the history's triggers, and the floor.

Every write of a customer, an address or a loyalty record also rewrites the
customer's row of the list's read table and writes the history's events
(triggers: :mod:`core.read_table_triggers`, :mod:`core.history_triggers`).
One run times, interleaved round by round on the same data:

* a ``PATCH`` of one customer through the API (p50), and one ``UPDATE`` of
  :data:`BULK_RECORDS` loyalty records' points in SQL, each in the three
  :data:`VARIANTS`: every trigger, without the history's, and none (the
  floor: the statement alone). Triggers are switched off with ``ALTER TABLE
  … DISABLE TRIGGER`` inside the timed transaction, which is rolled back, so
  the data and the triggers are as they were whatever happens;
* the same records changed through the API, ``POST /api/users/bulk-update/``
  (the first :data:`BULK_RECORDS` customers by sign-up time, 100 points
  more, every trigger), rolled back: the product's path against that floor.

Then, once, an import (:func:`import_figures`): :data:`IMPORT_ROWS` rows,
half of them new customers and half known ones with one changed field, in a
child process (``bench_writes --import-child``: its peak RSS is the
import's), then the same file again (nothing to change), both in one
transaction rolled back. Beside it this process requests list pages, timed
against the same pages idle, and counts server errors.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.test import Client
from django.test.utils import override_settings

from core.api.serializers import validated_import_row
from core.customers.export import customer_export_sql
from core.customers.imports import customer_import
from core.customers.selectors import customer_list
from core.history.context import Source, Writer, writing_as
from core.models import database_triggers
from core.security.api_users import api_user_create

#: Loyalty records one bulk change changes.
BULK_RECORDS = 100_000
#: Rows of the imported file: half new customers, half known ones changed.
IMPORT_ROWS = 1_000_000

#: Variants of a write: the generated triggers (by the end of their names)
#: switched off.
VARIANTS = {
    "all triggers": (),
    "without history": ("_history",),
    "no trigger (floor)": ("_history", "_listed"),
}

#: The list pages requested beside an import, and idle.
LIST_PAGES = (
    "/api/users/?page_size=50",
    "/api/users/?last_name=smith&page_size=50",
    "/api/users/?ordering=-relationship__points&page_size=50",
    "/api/users/?city=vienna&page_size=50",
)


class RolledBack(Exception):
    """Ends a timed transaction: its writes, and its trigger switches, go."""


@contextmanager
def rolled_back() -> Iterator[None]:
    """A transaction that is rolled back at its end, without a statement timeout."""
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL statement_timeout = 0")
            yield
            raise RolledBack
    except RolledBack:
        pass


def switch_off(cursor, suffixes: tuple[str, ...]) -> None:
    """Disable the generated triggers whose names end with ``suffixes``, for
    the rest of the (rolled back) transaction."""
    for trigger in database_triggers():
        if trigger.name.endswith(suffixes):
            cursor.execute(f"ALTER TABLE {trigger.table} DISABLE TRIGGER {trigger.name}")


def assert_no_trigger_left_off() -> None:
    """Every generated trigger enabled (the rolled-back switches are undone)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgenabled = 'D' AND tgname LIKE ANY (%s)",
            [["%_history", "%_listed"]],
        )
        disabled = [name for (name,) in cursor.fetchall()]
    if disabled:
        raise RuntimeError(f"triggers left disabled: {disabled}")


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def writer_client() -> Client:
    token = api_user_create(
        username="bench_writes", read_only=False, granted=("bulk_change_appuser",)
    )
    return Client(headers={"authorization": f"Token {token}"})


def bulk_update(suffixes: tuple[str, ...], records: int = BULK_RECORDS) -> float:
    """Seconds of one UPDATE of the first ``records`` records' points (rolled back)."""
    seconds = 0.0
    with rolled_back(), connection.cursor() as cursor:
        switch_off(cursor, suffixes)
        seconds = timed(
            lambda: cursor.execute(
                "UPDATE core_customerrelationship SET points = points + 1 WHERE appuser_id <= %s",
                [records],
            )
        )
    return seconds


def bulk_api_query(records: int = BULK_RECORDS) -> tuple[str, int]:
    """The list query of the first ``records`` customers by sign-up time (the
    generated data's ids follow it), and how many it finds."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT created, (SELECT count(*) FROM core_customer_list l "
            "WHERE l.created <= c.created) FROM core_customer_list c WHERE id <= %s "
            "ORDER BY id DESC LIMIT 1",
            [records],
        )
        created, matched = cursor.fetchone()
    return f"created_to={created.isoformat().replace('+', '%2B')}", matched


def bulk_api(client: Client, query: str, matched: int) -> float:
    """Seconds of one bulk-update through the API (rolled back)."""
    seconds = 0.0
    with rolled_back():
        started = time.perf_counter()
        response = client.post(
            f"/api/users/bulk-update/?{query}&confirm={matched}",
            {"add": {"relationship": {"points": 100}}},
            content_type="application/json",
        )
        seconds = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"bulk-update answered {response.status_code}: {response.content}")
    return seconds


def patch(client: Client, rng: random.Random, last: int, suffixes: tuple[str, ...]) -> float:
    """Seconds of one PATCH of a random customer's points or first name
    (rolled back, with the variant's triggers off)."""
    pk = rng.randint(1, last)
    body = (
        {"relationship": {"points": rng.randint(0, 10_000)}}
        if rng.random() < 0.5
        else {"first_name": rng.choice(["Anna", "Bernd", "Chloé", "Dmitri"])}
    )
    seconds = 0.0
    with rolled_back():
        with connection.cursor() as cursor:
            switch_off(cursor, suffixes)
        started = time.perf_counter()
        response = client.patch(f"/api/users/{pk}/", body, content_type="application/json")
        seconds = time.perf_counter() - started
        if response.status_code not in (200, 404):
            raise RuntimeError(f"PATCH /api/users/{pk}/ answered {response.status_code}")
    return seconds


@dataclass
class WriteFigures:
    """Medians (ms for a PATCH, s for the rest) by variant, and the runs."""

    patch_ms: dict[str, float]
    bulk_s: dict[str, float]
    bulk_api_s: float
    bulk_api_matched: int
    runs: dict[str, list[float]] = field(default_factory=dict)


def write_figures(*, repeat: int, patches: int = 20, seed: int = 1) -> WriteFigures:
    """The PATCH, UPDATE and bulk-update figures, every variant in each round,
    in an order shuffled per round; the first round warms the caches up."""
    client = writer_client()
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(id) FROM core_appuser")
        last = cursor.fetchone()[0]
    query, matched = bulk_api_query()
    rng = random.Random(seed)
    runs: dict[str, list[float]] = {}
    unthrottled = {"anon": None, "user": None}
    with override_settings(CRM_THROTTLE_RATES=unthrottled, CRM_BULK_TIMEOUT_MS=3_600_000):
        for round_ in range(repeat + 1):
            steps: list[tuple[str, Callable[[], list[float]]]] = [
                (
                    f"patch {name}",
                    lambda s=suffixes: [patch(client, rng, last, s) * 1000 for _ in range(patches)],
                )
                for name, suffixes in VARIANTS.items()
            ]
            steps += [
                (f"bulk {name}", lambda s=suffixes: [bulk_update(s)])
                for name, suffixes in VARIANTS.items()
            ]
            steps.append(("bulk api", lambda: [bulk_api(client, query, matched)]))
            rng.shuffle(steps)
            for name, step in steps:
                values = step()
                if round_:
                    runs.setdefault(name, []).extend(values)
    assert_no_trigger_left_off()
    return WriteFigures(
        patch_ms={name: statistics.median(runs[f"patch {name}"]) for name in VARIANTS},
        bulk_s={name: statistics.median(runs[f"bulk {name}"]) for name in VARIANTS},
        bulk_api_s=statistics.median(runs["bulk api"]),
        bulk_api_matched=matched,
        runs=runs,
    )


# -- an import ----------------------------------------------------------------------


def write_import_file(path: Path, rows: int = IMPORT_ROWS, seed: int = 1) -> int:
    """A CSV as the export writes it: ``rows // 2`` known customers (spread
    over the ids) with a new street, and as many new ones (copies of them with
    their own customer number and e-mail address, and no last activity: a new
    record starts now). Returns the rows written."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM core_customer_list")
        customers = cursor.fetchone()[0]
    every = max(1, customers // max(1, rows // 2))
    sql, params = customer_export_sql(customer_list(), "csv")
    written = 0
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as out, connection.cursor() as cursor:
        writer = None
        header: list[str] = []
        # psycopg's own cursor: Django's debug cursor takes no parameters for COPY.
        with cursor.cursor.copy(sql, params) as copy:
            for n, block in enumerate(copy):
                (cells,) = csv.reader(io.StringIO(bytes(block).decode()))
                if n == 0:
                    header = cells
                    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
                    writer.writerow(header)
                    continue
                if (n - 1) % every or written >= rows:
                    continue
                row = dict(zip(header, cells, strict=True))
                changed = dict(row, address_street=f"{row['address_street']} {rng.randint(2, 9)}")
                new = dict(
                    row,
                    id="",
                    customer_id=f"IMPORT-{n}",
                    email=f"import.{n}@example.com" if row["email"] else "",
                    relationship_last_activity="",
                )
                writer.writerow(list(changed.values()))
                writer.writerow(list(new.values()))
                written += 2
    return written


def import_twice(path: Path) -> dict[str, float]:
    """Import ``path``, then again, in one transaction rolled back (the child)."""
    figures: dict[str, float] = {}
    with rolled_back(), writing_as(Writer(Source.IMPORT, request_id="bench_writes")):
        for name in ("import", "again"):
            with path.open("rb") as stream:
                started = time.perf_counter()
                result = customer_import(stream, validate_row=validated_import_row)
                figures[f"{name}_s"] = time.perf_counter() - started
            figures[f"{name}_created"] = result.created
            figures[f"{name}_updated"] = result.updated
            figures[f"{name}_invalid"] = result.invalid
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


@dataclass
class ImportFigures:
    rows: int
    child: dict[str, float]
    list_idle_ms: float
    list_beside_ms: float
    list_requests: int
    list_errors: int


def list_pages(
    client: Client, keep_going: Callable[[], bool], at_least: int
) -> tuple[list[float], int]:
    """Milliseconds of list pages, round robin, while ``keep_going()`` (at
    least ``at_least``), and how many answered 5xx."""
    times: list[float] = []
    errors = 0
    while keep_going() or len(times) < at_least:
        url = LIST_PAGES[len(times) % len(LIST_PAGES)]
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        errors += response.status_code >= 500
    return times, errors


def import_figures(rows: int = IMPORT_ROWS) -> ImportFigures:
    """The import's figures (a child process), and the list's beside it."""
    client = writer_client()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "import.csv"
        written = write_import_file(path, rows)
        with override_settings(CRM_THROTTLE_RATES={"anon": None, "user": None}):
            list_pages(client, lambda: False, 8)  # warm
            idle, idle_errors = list_pages(client, lambda: False, 200)
            child = subprocess.Popen(
                [sys.executable, "manage.py", "bench_writes", "--import-child", str(path)],
                cwd=settings.BASE_DIR,
                env={**os.environ, **connection.child_environment()},
                stdout=subprocess.PIPE,
                text=True,
            )
            beside, errors = list_pages(client, lambda: child.poll() is None, 1)
        out, _ = child.communicate()
    if child.returncode:
        raise RuntimeError(f"the import's child failed ({child.returncode})")
    return ImportFigures(
        rows=written,
        child=json.loads(out.strip().splitlines()[-1]),
        list_idle_ms=statistics.median(idle),
        list_beside_ms=statistics.median(beside),
        list_requests=len(beside),
        list_errors=idle_errors + errors,
    )
