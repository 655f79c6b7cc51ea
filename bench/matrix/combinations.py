"""The matrix's combinations: filters x orderings x page positions, dealt from
decks so that every filter, band, ordering and position comes up about
equally often, in an order fixed by the seed."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from core.customers.ordering import SORT_FIELDS, InvalidOrdering, customer_ordering

from .oracle import FILTERS, RANGE_PAIRS
from .profiling import DataProfile, FilterValue, SearchValue

# -- orderings ------------------------------------------------------------------

DEFAULT = ""


def single_orderings() -> list[str]:
    return [f"{sign}{name}" for name in SORT_FIELDS for sign in ("", "-")]


def multi_orderings() -> list[str]:
    """Every two-field ordering, in each of the four direction patterns."""
    return [
        f"{a}{first},{b}{second}"
        for first in SORT_FIELDS
        for second in SORT_FIELDS
        if first != second
        for a in ("", "-")
        for b in ("", "-")
    ]


def ordering_allowed(spec: str, searching: bool) -> bool:
    try:
        customer_ordering(spec or None, searching=searching)
    except InvalidOrdering:
        return False
    return True


# -- combinations ----------------------------------------------------------------

FIRST, CURSOR, PAGE = "first", "cursor", "page"
POSITIONS = (FIRST, CURSOR, PAGE)


@dataclass(frozen=True)
class Combination:
    filters: tuple[FilterValue, ...]
    search: SearchValue | None
    ordering: str
    position: str

    @property
    def shape(self) -> str:
        parts = [f"{len(self.filters)} filter{'s' if len(self.filters) != 1 else ''}"]
        if self.search:
            parts.append("search")
        return " + ".join(parts)

    @property
    def bands(self) -> str:
        bands = [f.band for f in self.filters] + ([self.search.band] if self.search else [])
        return "/".join(bands) or "none"

    def params(self) -> dict[str, str]:
        """The query parameters, without the position."""
        params = {f.name: f.value for f in self.filters}
        if self.search:
            params["search"] = self.search.text
        if self.ordering:
            params["ordering"] = self.ordering
        return params

    @property
    def label(self) -> str:
        text = urlencode(self.params()) or "(no parameters)"
        return f"{text} @{self.position}"


class Deck:
    """Deals items in a shuffled order, reshuffling when it runs out: every item
    comes up equally often, in an order fixed by the seed."""

    def __init__(self, items: Sequence[Any], rng: random.Random) -> None:
        self.items, self.rng, self.pending = list(items), rng, []

    def deal(self) -> Any:
        if not self.pending:
            self.pending = self.items[:]
            self.rng.shuffle(self.pending)
        return self.pending.pop()


#: Shapes of the filter part, dealt like cards: alone, in pairs, with search.
SHAPES = ("none", "one", "one", "one", "one", "two", "two", "two", "two", "search", "search+one")
#: Ordering kinds: the default, one field, two fields.
ORDER_KINDS = ("default", "single", "single", "single", "single", "single", "multi", "multi")


def _valid_pair(a: FilterValue, b: FilterValue) -> bool:
    if a.name == b.name:
        return False
    for low, high in RANGE_PAIRS:
        pair = {a.name: a, b.name: b}
        if low in pair and high in pair:
            spec = FILTERS[low]
            if spec.python(pair[low].value) > spec.python(pair[high].value):
                return False
    return True


def sample_combinations(
    profile: DataProfile, size: int, seed: int
) -> tuple[list[Combination], list[Combination]]:
    """``size`` distinct combinations the API serves, and those it refuses (by ordering).

    Deterministic for a seed and a profile.
    """
    rng = random.Random(seed)
    shapes = Deck(SHAPES if profile.searches else [s for s in SHAPES if "search" not in s], rng)
    values = Deck(profile.values, rng)
    searches = Deck(profile.searches or [None], rng)
    kinds = Deck(ORDER_KINDS, rng)
    orderings = {
        "default": Deck([DEFAULT], rng),
        "single": Deck(single_orderings(), rng),
        "multi": Deck(multi_orderings(), rng),
    }
    positions = Deck(POSITIONS, rng)
    served: dict[str, Combination] = {}
    refused: dict[str, Combination] = {}
    attempts = 0
    while len(served) < size and attempts < size * 50:
        attempts += 1
        shape = shapes.deal()
        filters: list[FilterValue] = []
        if shape in ("one", "two", "search+one"):
            filters.append(values.deal())
        if shape == "two":
            for _ in range(20):
                other = values.deal()
                if _valid_pair(filters[0], other):
                    filters.append(other)
                    break
            else:
                continue
        search = searches.deal() if "search" in shape else None
        ordering = orderings[kinds.deal()].deal()
        combination = Combination(
            tuple(sorted(filters, key=lambda f: f.name)), search, ordering, positions.deal()
        )
        if ordering_allowed(ordering, searching=search is not None):
            served.setdefault(combination.label, combination)
        else:
            refused.setdefault(combination.label, combination)
    return list(served.values()), list(refused.values())
