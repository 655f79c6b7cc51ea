"""bench_history: how fast a customer's history is read and a person erased, and what it takes.

* a customer's history page (the API's, 50 events) when they have
  :data:`CUSTOMER_EVENTS` events among ``--events`` in all, p50;
* the erasure of one customer (the API's), p50, each rolled back;
* the bytes an event takes: a one-field change's row, and the table with
  its indexes per event.

What the history costs a write is ``bench_writes``'s (every trigger against
the read table's alone).
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass

from django.db import connection
from django.test import Client
from django.test.utils import override_settings

from core.security.api_users import api_user_create

from .writes import rolled_back, timed

#: The customer whose history is read has this many events.
CUSTOMER_EVENTS = 1_000


@dataclass
class Figures:
    history_page_ms: float
    erase_ms: float
    events: int
    event_row_bytes: int
    bytes_per_event: float


def fill_history(events: int, customer: int) -> None:
    """At least ``events`` events in all, ``CUSTOMER_EVENTS`` of them the
    customer's: one-field changes of the points, spread over every customer."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), max(id) FROM core_history")
        present, _ = cursor.fetchone()
        cursor.execute("SELECT max(id) FROM core_appuser")
        customers = cursor.fetchone()[0]
        cursor.execute("SET statement_timeout = 0")
        cursor.execute(
            "INSERT INTO core_history (at, entity, row_id, customer_id, kind, changes, source) "
            "SELECT now() - make_interval(secs => g), 3, c, c, 'U', "
            "jsonb_build_object('relationship.points', "
            "jsonb_build_array(g %% 1000, g %% 1000 + 1)), 0 "
            "FROM generate_series(1, %s) g, LATERAL (SELECT 1 + (g::bigint * 7919) %% %s AS c) k",
            [max(0, events - present), customers],
        )
        cursor.execute("SELECT count(*) FROM core_history WHERE customer_id = %s", [customer])
        own = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO core_history (at, entity, row_id, customer_id, kind, changes, source) "
            "SELECT now() - make_interval(secs => g), 3, %s, %s, 'U', "
            "jsonb_build_object('relationship.points', jsonb_build_array(g, g + 1)), 0 "
            "FROM generate_series(1, %s) g",
            [customer, customer, max(0, CUSTOMER_EVENTS - own)],
        )
        cursor.execute("ANALYZE core_history")


def storage() -> tuple[int, int, float]:
    """Events in all; the bytes of a one-field change's row; table and indexes per event."""
    with connection.cursor() as cursor:
        # The requests before it left the session the API's statement timeout.
        cursor.execute("SET statement_timeout = 0")
        cursor.execute("SELECT count(*), pg_total_relation_size('core_history') FROM core_history")
        events, total = cursor.fetchone()
        cursor.execute(
            "SELECT pg_column_size(h.*) FROM core_history h WHERE kind = 'U' "
            "AND (SELECT count(*) FROM jsonb_object_keys(changes)) = 1 LIMIT 1"
        )
        row = cursor.fetchone()
    return events, (row[0] if row else 0), total / max(events, 1)


def measure(*, repeat: int, events: int, customer: int = 17, seed: int = 1) -> Figures:
    """Every figure: the history filled up to ``events`` first."""
    token = api_user_create(
        username="bench_history", read_only=False, granted=("view_history", "erase_appuser")
    )
    client = Client(headers={"authorization": f"Token {token}"})
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(id) FROM core_appuser")
        last = cursor.fetchone()[0]
    rng = random.Random(seed)
    with override_settings(CRM_THROTTLE_RATES={"anon": None, "user": None}):
        fill_history(events, customer)
        pages = []
        for _ in range(repeat * 5 + 1):
            pages.append(timed(lambda: client.get(f"/api/users/{customer}/history/")))
        erasures = []
        for pk in rng.sample(range(1, last + 1), repeat + 1):
            with rolled_back():
                erasures.append(timed(lambda pk=pk: client.post(f"/api/users/{pk}/erase/")))
    total, row_bytes, per_event = storage()
    return Figures(
        history_page_ms=statistics.median(pages[1:]) * 1000,
        erase_ms=statistics.median(erasures[1:]) * 1000,
        events=total,
        event_row_bytes=row_bytes,
        bytes_per_event=per_event,
    )
