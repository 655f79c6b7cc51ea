"""The matrix's values, read off the data: every filter at three selectivities
(rare, medium, common) and names people search for."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.customers.filters import CustomerFilter

from .oracle import (
    BAND_TARGETS,
    BANDS,
    FILTERS,
    RARE,
    FilterSpec,
    Reference,
    band_of,
    pg_upper,
    search_sql,
)

# -- the values: read off the data ----------------------------------------------


@dataclass(frozen=True)
class FilterValue:
    """One filter at one selectivity: ``name=value`` matches ``matches`` customers."""

    name: str
    value: str
    band: str
    matches: int

    @property
    def label(self) -> str:
        return f"{self.name}={self.value}"


@dataclass(frozen=True)
class SearchValue:
    """A ``search=`` text, the band of its matches, and what each word means."""

    text: str
    band: str
    matches: int


@dataclass
class DataProfile:
    """What the matrix read off the database: the customers and the values per band."""

    customers: int
    values: list[FilterValue]
    searches: list[SearchValue]
    missing: list[str]  # "city: rare" for each band no value could fill
    cities: list[str] = field(default_factory=list)  # distinct city names


PROFILE_SAMPLE = 20_000


def _sample(ref: Reference, spec: FilterSpec, rng: random.Random) -> list[Any]:
    """Up to PROFILE_SAMPLE values of the filter's column, from rows spread over the table."""
    table = spec.source
    column = spec.column.split(".", 1)[1]
    total = ref.value(f"SELECT count(*) FROM {table}")
    if total <= PROFILE_SAMPLE:
        return [row[0] for row in ref.rows(f"SELECT {column} FROM {table} ORDER BY 1")]
    percent = min(100.0, 100.0 * 3 * PROFILE_SAMPLE / total)
    # The same rows for the same seed; ordered, because a parallel scan
    # returns them in any order.
    rows = ref.rows(
        f"SELECT {column} FROM {table} TABLESAMPLE BERNOULLI (%s) REPEATABLE (%s) ORDER BY 1",
        [percent, rng.randrange(2**31)],
    )
    values = [row[0] for row in rows]
    rng.shuffle(values)
    return values[:PROFILE_SAMPLE]


def _substring_candidates(values: Sequence[str], rng: random.Random) -> list[str]:
    """Whole values and pieces of them, lower-cased: what a user types into a filter."""
    seen: dict[str, None] = {}
    for value in values[:2000]:
        text = value.lower()
        seen.setdefault(text)
        for length in (1, 2, 3, 4, 5, 7):
            if len(text) > length:
                start = rng.randrange(len(text) - length + 1)
                piece = text[start : start + length]
                if piece.strip() == piece and piece:
                    seen.setdefault(piece)
    candidates = list(seen)
    rng.shuffle(candidates)
    return candidates


def _text(spec: FilterSpec, value: Any) -> str:
    if spec.type == "instant":
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if spec.type == "date":
        return value.isoformat()
    return str(value)


def _candidates(ref: Reference, spec: FilterSpec, rng: random.Random, customers: int):
    """Candidate values per band, best first, with the band the sample suggests."""
    if spec.kind in ("lower", "upper"):
        # A range bound at the quantile that gives the band's target share,
        # then its neighbours: ties (many records active "now") can push a
        # quantile's count out of its band.
        table, column = spec.source, spec.column.split(".", 1)[1]
        inward, outward = (">", "<") if spec.kind == "lower" else ("<", ">")
        direction = "DESC" if spec.kind == "lower" else "ASC"
        total = ref.value(f"SELECT count({column}) FROM {table}")
        for band in BANDS:
            position = max(0, min(total - 1, round(BAND_TARGETS[band] * total) - 1))
            start = ref.value(
                f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL "
                f"ORDER BY {column} {direction} OFFSET %s LIMIT 1",
                [position],
            )
            if start is None:
                continue
            yield band, _text(spec, start)
            for operator in (inward, outward):
                order = "ASC" if operator == ">" else "DESC"
                rows = ref.rows(
                    f"SELECT DISTINCT {column} FROM (SELECT {column} FROM {table} "
                    f"WHERE {column} {operator} %s ORDER BY {column} {order} LIMIT 5000) s "
                    f"ORDER BY {column} {order} LIMIT 2",
                    [start],
                )
                for (value,) in rows:
                    yield band, _text(spec, value)
        return
    sample = [v for v in _sample(ref, spec, rng) if v is not None]
    if not sample:
        return
    scale = customers / len(sample)
    if spec.kind == "exact":
        counts: dict[str, int] = {}
        for v in sample:
            counts[str(v)] = counts.get(str(v), 0) + 1
        candidates = list(counts)
        rng.shuffle(candidates)
        share = counts.__getitem__
    else:
        candidates = _substring_candidates([str(v) for v in sample], rng)
        upper = [pg_upper(str(v)) for v in sample]

        def share(candidate: str) -> int:
            needle = pg_upper(candidate)
            return sum(1 for v in upper if needle in v)

    for candidate in candidates:
        seen = share(candidate)
        guess = band_of(max(1, round(seen * scale)), customers)
        if seen <= 1 and len(candidate) >= 4:
            guess = RARE
        if guess is not None:
            yield guess, candidate


#: Candidates whose exact count is checked per band before giving up on it.
TRIES_PER_BAND = 6
#: Candidates looked at per filter (each costs a pass over the sample).
MAX_CANDIDATES = 400


def profile_data(ref: Reference, seed: int, progress: Callable[[str], None]) -> DataProfile:
    """Choose each filter's values per band, and the search words, from the data."""
    rng = random.Random(seed)
    customers = ref.value("SELECT count(*) FROM core_appuser")
    values: list[FilterValue] = []
    missing: list[str] = []
    for name in CustomerFilter.base_filters:
        spec = FILTERS.get(name)
        if spec is None:
            raise ValueError(f"the matrix has no FilterSpec for the filter {name!r}")
        found: dict[str, FilterValue] = {}
        tries = dict.fromkeys(BANDS, 0)
        for examined, (guess, candidate) in enumerate(_candidates(ref, spec, rng, customers)):
            if examined >= MAX_CANDIDATES:
                break
            if guess in found or tries[guess] >= TRIES_PER_BAND:
                if len(found) == len(BANDS) or all(
                    b in found or tries[b] >= TRIES_PER_BAND for b in BANDS
                ):
                    break
                continue
            tries[guess] += 1
            matches = ref.count([spec.sql(candidate)])
            band = band_of(matches, customers)
            if band is not None and band not in found:
                found[band] = FilterValue(name, candidate, band, matches)
        for band in BANDS:
            if band in found:
                values.append(found[band])
            else:
                missing.append(f"{name}: {band}")
        progress(
            f"  {name:<20} "
            + ", ".join(f"{v.band} {v.value!r} ({v.matches:,})" for v in found.values())
        )
    cities = [row[0] for row in ref.rows("SELECT DISTINCT city FROM core_address ORDER BY 1")]
    searches = _search_values(ref, rng, customers, cities, progress)
    return DataProfile(customers, values, searches, missing, cities)


def _search_values(ref, rng, customers, cities, progress) -> list[SearchValue]:
    """Names people search for, per band; half of them with a typo."""
    names = [
        row[0]
        for row in ref.rows(
            "SELECT value FROM core_searchterm WHERE length(value) >= 4 ORDER BY field, value"
        )
    ]
    rng.shuffle(names)
    found: dict[str, SearchValue] = {}
    for name in names[:60]:
        text = name.lower()
        if rng.random() < 0.5 and len(text) > 4:
            i = rng.randrange(1, len(text) - 1)
            text = text[:i] + text[i + 1] + text[i] + text[i + 2 :]  # swap two letters
        if len(found) == len(BANDS):
            break
        matches = ref.count([search_sql(ref, text, cities)])
        band = band_of(matches, customers)
        if band is not None and band not in found:
            found[band] = SearchValue(text, band, matches)
    progress(
        "  search               "
        + ", ".join(f"{s.band} {s.text!r} ({s.matches:,})" for s in found.values())
    )
    return list(found.values())


#: core.customers.search's documented semantics, restated for the reference.
