"""What writes cost: a PATCH through the API and a bulk update of loyalty records.

Every write of a customer, an address or a loyalty record also rewrites the
customer's row of the list's read table (triggers, see
:mod:`core.migrations.0011_customer_list`). These figures say what that
costs, measured the way users write: one customer at a time through the
API, and many records at once in SQL.
"""

from __future__ import annotations

import random
import time

import numpy as np
from django.db import connection, transaction
from django.test import Client
from django.test.utils import override_settings

from core.security.api_users import api_user_create

#: Loyalty records the bulk update changes.
BULK_RECORDS = 100_000


class RolledBack(Exception):
    """Raised to roll the bulk update back once it is timed."""


def patch_p50(repeat: int, seed: int = 1) -> float:
    """p50 (ms) of a PATCH that changes one customer's points, then their first name,
    alternately, on random customers."""
    token = api_user_create(username="bench_writes", read_only=False)
    client = Client(headers={"authorization": f"Token {token}"})
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(id) FROM core_appuser")
        last = cursor.fetchone()[0] or 0
    rng = random.Random(seed)
    times = []
    with override_settings(CRM_THROTTLE_RATES={"anon": None, "user": None}):
        for i in range(repeat + 1):
            pk = rng.randint(1, last)
            body = (
                {"relationship": {"points": rng.randint(0, 10_000)}}
                if i % 2
                else {"first_name": rng.choice(["Anna", "Bernd", "Chloé", "Dmitri"])}
            )
            started = time.perf_counter()
            response = client.patch(f"/api/users/{pk}/", body, content_type="application/json")
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code not in (200, 404):
                raise RuntimeError(f"PATCH /api/users/{pk}/ answered {response.status_code}")
            if i:  # the first one warms the caches up
                times.append(elapsed)
    return float(np.percentile(times, 50))


def bulk_update_seconds(records: int = BULK_RECORDS) -> float:
    """Seconds for one ``UPDATE`` of ``records`` loyalty records' points, commit
    excluded: it runs in a transaction that is rolled back, so the data stays."""
    started = time.perf_counter()
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # The API's statement timeout (set on the connection by its requests) is
            # for pages, not for this.
            cursor.execute("SET LOCAL statement_timeout = 0")
            started = time.perf_counter()
            cursor.execute(
                "UPDATE core_customerrelationship SET points = points + 1 WHERE appuser_id <= %s",
                [records],
            )
            seconds = time.perf_counter() - started
            raise RolledBack
    except RolledBack:
        pass
    return seconds


def write_figures(repeat: int) -> list[str]:
    """The write figures, as lines of text (bench_features)."""
    return [
        f"PATCH /api/users/<id>/ (points or first name): p50 {patch_p50(repeat):.2f} ms",
        f"UPDATE of {BULK_RECORDS:,} loyalty records' points: {bulk_update_seconds():.2f} s",
    ]
