"""The matrix's checks: every answer against the oracle (the filters hold, the
order holds, no page overlaps the next, the count)."""

from __future__ import annotations

import itertools

from .combinations import Combination
from .oracle import FILTERS, compare


def check_rows(
    combination: Combination, rows: list[dict], expected_rows: int, search_ok: set[int] | None
) -> str | None:
    """The filters hold and the order holds on one page; the page has the right size."""
    if len(rows) != expected_rows:
        return f"expected {expected_rows} rows, got {len(rows)}"
    for f in combination.filters:
        spec = FILTERS[f.name]
        wrong = [row["id"] for row in rows if not spec.holds(row, f.value)]
        if wrong:
            return f"rows {wrong[:5]} do not meet {f.label}"
    if search_ok is not None:
        wrong = [row["id"] for row in rows if row["id"] not in search_ok]
        if wrong:
            return f"rows {wrong[:5]} do not match search={combination.search.text!r}"
    if combination.ordering or not combination.search:
        for a, b in itertools.pairwise(rows):
            if compare(a, b, combination.ordering) > 0:
                return f"rows {a['id']} and {b['id']} are out of order ({combination.ordering})"
    if len({row["id"] for row in rows}) != len(rows):
        return "a customer appears twice on the page"
    return None


def check_next(combination: Combination, rows: list[dict], following: list[dict]) -> str | None:
    """The next page neither overlaps this one nor goes back in the order."""
    overlap = {row["id"] for row in rows} & {row["id"] for row in following}
    if overlap:
        return f"the next page repeats rows {sorted(overlap)[:5]}"
    ordered = combination.ordering or not combination.search
    if rows and following and ordered and compare(rows[-1], following[0], combination.ordering) > 0:
        return "the next page goes back in the order"
    return None
