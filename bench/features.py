"""bench_features: search, export and admin timings on the loaded data."""

from __future__ import annotations

import resource
import time
from typing import Any
from urllib.parse import urlencode

import numpy as np
from django.contrib.auth import get_user_model
from django.test import Client
from django.test.utils import override_settings

from core.security.api_users import api_user_create

from .scenarios import OPTIMIZED_URL

#: Names as users type them, a typo, and the widest searches there are: one
#: letter, and four one-letter words (no name is similar to one letter, so
#: they must come back empty fast, not after reading every customer); then
#: one common word each: a surname, a typo close to many first names, a
#: city (each sorted by band: core.customers.page_statement.banded_matches).
SEARCHES = (
    "jon smith",
    "mary johnson",
    "maria gonzalez",
    "smiht",
    "a",
    "a e i o",
    "smith",
    "marlne",
    "vienna",
)
ADMIN_PAGES = (
    "/admin/core/appuser/",
    "/admin/core/appuser/?q=smith",
    "/admin/core/appuser/?gender__exact=f",
    "/admin/core/appuser/?country=Austria",
    "/admin/core/appuser/?p=2000",
    "/admin/core/appuser/?o=5",
    "/admin/core/appuser/?o=-6",
    "/admin/core/customerrelationship/",
    "/admin/core/customerrelationship/?o=-1",
    "/admin/core/customerrelationship/?o=-2",
)


def _p50(client: Client, url: str, repeat: int) -> tuple[float, Any]:
    client.get(url)
    times, response = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times, 50)), response


def feature_figures(repeat: int) -> list[str]:
    """Search, export and admin timings, as lines of text (bench_features)."""
    token = api_user_create(username="bench_features", read_only=True)
    client = Client(headers={"authorization": f"Token {token}"})
    lines = []
    limits = override_settings(CRM_THROTTLE_RATES={"anon": None, "user": None})
    limits.enable()
    try:
        for text in SEARCHES:
            ms, response = _p50(client, f"{OPTIMIZED_URL}?{urlencode({'search': text})}", repeat)
            lines.append(
                f"search {text!r}: p50 {ms:.0f} ms, {response.json().get('count')} matches"
            )
        for fmt in ("csv", "ndjson"):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            started = time.perf_counter()
            response = client.get(f"{OPTIMIZED_URL}export/?format={fmt}")
            rows = size = 0
            for chunk in response.streaming_content:
                rows += chunk.count(b"\n")
                size += len(chunk)
            seconds = time.perf_counter() - started
            rows -= fmt == "csv"  # the header
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            lines.append(
                f"export {fmt}: {rows:,} rows, {size / 1e6:.0f} MB in {seconds:.1f} s, "
                f"{rows / seconds:,.0f} rows/s; peak RSS {before:.0f} -> {after:.0f} MB"
            )
        staff, _ = get_user_model().objects.get_or_create(username="bench_features_admin")
        staff.is_staff = staff.is_superuser = True
        staff.save()
        admin_client = Client()
        admin_client.force_login(staff)
        for path in ADMIN_PAGES:
            ms, response = _p50(admin_client, path, repeat)
            lines.append(f"admin {path}: p50 {ms:.0f} ms (HTTP {response.status_code})")
    finally:
        limits.disable()
    return lines
