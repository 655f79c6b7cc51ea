"""Typo-tolerant search over customers (``?search=``), and the values it looks up.

See :func:`search_match` for the meaning, and :class:`core.models.SearchTerm`
for why similar names and cities are looked up among the distinct values
rather than over millions of customers. The read table's trigger function
adds every value a write brings (migration 0011); generate_data refills the
table with :func:`search_terms_rebuild`, beside the query that reads it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from django.db.models import Case, F, FloatField, Q, QuerySet, Value, When
from django.db.models.functions import Cast, Greatest

from core.folding import fold
from core.models import CustomerRow
from core.read_table import Column, Search, read_table

from . import tunables
from .distinct import distinct_values_sql
from .filters import CustomerFilter, has_trigram, one_of
from .known import Similar, look_up
from .ordering import SEARCH_RANK
from .sample import ListSample
from .statements import AnyOf, Param

TABLE = read_table(CustomerRow)

#: The columns a word of ``?search=`` looks up, by how (each column's
#: :class:`core.read_table.Search`): similar names, clearly similar places,
#: the word itself, a word with a digit as a substring.
SEARCHED: dict[Search, list[Column]] = {
    kind: [c for c in TABLE.columns if c.listed.search is kind] for kind in Search
}


def search_words(text: str) -> list[str]:
    """The words of a search, as typed (the first few)."""
    return text.split()[: tunables.MAX_SEARCH_WORDS]


class UnsearchableWord(ValueError):
    """A search word that could only be found by reading every customer."""


def check_searchable(text: str) -> None:
    """Refuse a word with a digit but no trigram ("24"): it could only be looked
    up in every customer's phone number, and matches most of them anyway."""
    for word in search_words(text):
        if re.search(r"\d", word) and not has_trigram(word):
            raise UnsearchableWord(
                f"{word.upper()!r} is too short to look up in phone numbers: give at least "
                "three letters or digits in a row."
            )


@dataclass(frozen=True)
class RankBand:
    """The customers a one-word search ranks ``score``: those with one of
    ``names`` (a column and its values), and none of the values of ``closer``
    (closer names in the other columns); or, for the last band, those matched
    by ``unranked`` (the customer number, …) and by no name at all."""

    score: float
    names: tuple[str, list[str]] | None
    closer: tuple[tuple[str, list[str]], ...]
    unranked: Q | None = None

    @property
    def condition(self) -> Q:
        band = one_of(*self.names) if self.names is not None else self.unranked
        for column, values in self.closer:
            band &= ~one_of(column, values)
        return band

    def sample_test(self, sample: ListSample) -> np.ndarray:
        """The band's customers in the sample (the unranked, few, as none)."""
        if self.names is None:
            return np.zeros(sample.size, dtype=bool)
        matches = sample.isin(*self.names)
        for column, values in self.closer:
            matches &= ~sample.isin(column, values)
        return matches


@dataclass(frozen=True)
class SearchWord:
    """One word of a search and the known values it stands for: the places
    clearly similar to it (then it means those places), else the similar
    names, by column."""

    word: str
    similar: dict[str, list[str]] = field(default_factory=dict)

    @property
    def upper(self) -> str:
        return self.word.upper()

    @property
    def places(self) -> list[Column]:
        return [c for c in SEARCHED[Search.PLACE] if self.similar.get(c.name)]

    @property
    def digits(self) -> bool:
        """Is it looked up as a substring? Only a word with a digit can be in a number."""
        return bool(re.search(r"\d", self.word))

    def exact_values(self, column: Column) -> list[str]:
        """The word as the column's source field stores it, as typed or upper-cased."""
        return sorted({column.source.get_prep_value(w) for w in (self.word, self.upper)})

    def condition(self) -> Q:
        if self.places:
            ways = Q()
            for column in self.places:
                ways |= one_of(column.name, self.similar[column.name])
            return ways
        ways = Q()
        for column in SEARCHED[Search.NAME]:
            ways |= one_of(column.name, self.similar.get(column.name, []))
        return ways | self.unranked_condition()

    def unranked_condition(self) -> Q:
        """The ways to match that the rank does not weigh: the customer number,
        the e-mail address, a number containing the word."""
        ways = Q()
        if self.places:
            return ways
        for column in SEARCHED[Search.EXACT]:
            ways |= one_of(column.key, self.exact_values(column))
        if self.digits:
            for column in SEARCHED[Search.DIGITS]:
                # As ?<column>= looks it up: through the trigram index.
                ways |= CustomerFilter.base_filters[column.name].condition(self.upper)
        return ways

    def bands(self) -> tuple[RankBand, ...]:
        """The word's matches by rank, best first: for each rank a customer can
        have, the condition of those who have it, each customer in exactly one.

        A customer's rank is the closeness of the nearer of their names (or
        places, see :meth:`rank`): a customer is in the band of their closest
        name, and of the first such column where two are as close. Those
        matched by the customer number alone (or the e-mail address, or a
        number) rank 0, last.
        """
        columns = self.ranked_columns
        scores = self.closeness

        def named(column: str, keep: Callable[[float], bool]) -> tuple[str, list[str]] | None:
            values = [value for value, score in scores[column].items() if keep(score)]
            return (column, values) if values else None

        bands: list[RankBand] = []
        for score in sorted({s for by in scores.values() for s in by.values()}, reverse=True):
            for i, column in enumerate(columns):
                band = named(column.name, lambda s: s == score)  # noqa: B023 (used at once)
                if band is None:
                    continue
                closer = [
                    *(named(other.name, lambda s: s >= score) for other in columns[:i]),  # noqa: B023
                    *(named(other.name, lambda s: s > score) for other in columns[i + 1 :]),  # noqa: B023
                ]
                bands.append(RankBand(score, band, tuple(c for c in closer if c is not None)))
        unranked = self.unranked_condition()
        if unranked:
            known = [named(column.name, lambda s: True) for column in columns]
            bands.append(
                RankBand(0.0, None, tuple(k for k in known if k is not None), unranked=unranked)
            )
        return tuple(bands)

    @property
    def ranked_columns(self) -> list[Column]:
        """The columns whose closeness to the word ranks a customer."""
        return self.places or SEARCHED[Search.NAME]

    @cached_property
    def closeness(self) -> dict[str, dict[str, float]]:
        """Each candidate value's closeness to the word (:func:`closeness`), by
        column: computed once for the rank and the bands alike."""
        return {
            c.name: {value: closeness(self.upper, value) for value in self.similar.get(c.name, [])}
            for c in self.ranked_columns
        }

    def rank(self) -> Any:
        cases = [closeness_case(c.name, self.closeness[c.name]) for c in self.ranked_columns]
        return cases[0] if len(cases) == 1 else Greatest(*cases)

    def sample_test(self, sample: ListSample) -> np.ndarray:
        matches = np.zeros(sample.size, dtype=bool)
        if self.places:
            for column in self.places:
                matches |= sample.isin(column.name, self.similar[column.name])
            return matches
        for column in SEARCHED[Search.NAME]:
            matches |= sample.isin(column.name, self.similar.get(column.name, []))
        for column in SEARCHED[Search.EXACT]:
            for value in self.exact_values(column):
                matches |= sample.equals(column.key, value)
        if self.digits:
            for column in SEARCHED[Search.DIGITS]:
                matches |= sample.contains(column.name, self.upper)
        return matches


@dataclass(frozen=True)
class SearchMatch:
    """What ``?search=`` means in SQL: every word's condition, and the rank
    that orders the matches (see :func:`search_match`)."""

    words: tuple[SearchWord, ...]

    @classmethod
    def of(cls, words: list[str], found: list[dict[str, list[str]]]) -> SearchMatch:
        """The match of ``words``, given what :class:`core.customers.known.Similar`
        found for each."""
        return cls(
            tuple(SearchWord(word, dict(values)) for word, values in zip(words, found, strict=True))
        )

    @property
    def condition(self) -> Q:
        condition = Q()
        for word in self.words:
            condition &= word.condition()
        return condition

    @cached_property
    def rank(self) -> Any:
        """How close a customer is to the words (see :func:`search_match`)."""
        rank: Any = Value(0.0)
        for word in self.words:
            rank = rank + word.rank()
        # A double, so that a cursor carries the rank exactly: a float4 compared
        # with the cursor's double goes through numeric at six digits, and the
        # boundary row would come back on the next page.
        return Cast(rank, FloatField())

    def ranked(self, queryset: QuerySet) -> QuerySet:
        """``queryset`` with the rank to order by (``search_rank``)."""
        return queryset.alias(**{SEARCH_RANK: self.rank})

    def apply(self, queryset: QuerySet) -> QuerySet:
        """Customers of ``queryset`` that match, ranked (the admin's search)."""
        return self.ranked(queryset).filter(self.condition)

    def sample_test(self, sample: ListSample) -> np.ndarray:
        matches = sample.everyone()
        for word in self.words:
            matches &= word.sample_test(sample)
        return matches

    def bands(self) -> tuple[RankBand, ...] | None:
        """The matches by rank, a condition for each rank a customer can have
        (:meth:`SearchWord.bands`); None for several words, whose ranks add up.

        Ordered by rank, a common name's matches were each read from the
        table and ranked (a ``CASE`` over the candidate names: 37,063 rows
        for ``search=smith`` at 3M, 106 ms). Read by band, each band's rows
        come from the b-tree of a name alone (each name's index holds both
        names, see :mod:`core.models`), and its rank is a constant: see
        :func:`core.customers.page_statement.banded_matches`.
        """
        return self.words[0].bands() if len(self.words) == 1 else None


def search_match(text: str) -> SearchMatch:
    """Customers matching every word of ``text``, typos allowed, the closest first.

    A word that is clearly similar to a city's name (see core.customers.tunables.CITY_SIMILARITY)
    keeps that city's customers; any other word must be trigram-similar to
    the first or last name, be the customer number, or (a word with a
    digit) be part of the phone number. Similar names are looked up among
    the distinct names (SearchTerm; every word's in one statement, see
    :mod:`core.customers.known`), and the customers who bear them come from
    the read table's name b-trees.

    The rank adds up, for each word, how close the nearer of the first and
    last name (or the city) is to it (:func:`closeness`: 1 for the same word,
    less for each edit). Trigram similarity finds the candidates but ranks
    them poorly: it puts "Joe" (0.33) above "John" (0.29) for "jon", while
    John is the same name with one letter more, and "Jon Smith" itself above
    neither. The closeness of each candidate name is computed here, once per
    distinct name, and reaches SQL as a ``CASE`` over those names.
    """
    words = search_words(text)
    return SearchMatch.of(words, look_up([Similar(word) for word in words]))


def closeness(word: str, name: str) -> float:
    """How close ``name`` is to the searched ``word``: 1 when equal (any case,
    folded: Müller is MUELLER), less by each edit (a letter inserted,
    deleted, replaced, or two neighbours swapped), relative to the longer of
    the two.

    "JON": John and Joan 0.75, Joe 0.67, Jonathan 0.38. "SMIHT": Smith 0.8.
    """
    a, b = fold(word), fold(name)
    if a == b:
        return 1.0
    return 1.0 - edit_distance(a, b) / max(len(a), len(b))


def edit_distance(a: str, b: str) -> int:
    """Edits from ``a`` to ``b``, a swap of neighbours counting as one (optimal
    string alignment). Names are short: a plain dynamic programme suffices."""
    before: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            current[j] = min(
                previous[j] + 1,
                current[j - 1] + 1,
                previous[j - 1] + (a[i - 1] != b[j - 1]),
            )
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], before[j - 2] + 1)
        before, previous = previous, current
    return previous[len(b)]


def closeness_case(column: str, scores: dict[str, float]) -> Any:
    """``CASE WHEN column IN (…) THEN closeness …`` for the candidate values and
    their closeness, ``scores`` (one branch per distinct closeness, closest
    first; 0 for any other value)."""
    by_closeness: dict[float, list[str]] = defaultdict(list)
    for value, score in scores.items():
        by_closeness[score].append(value)
    if not by_closeness:
        return Value(0.0)
    return Case(
        *[
            When(AnyOf(F(column), Param(names)), then=Param(score))
            for score, names in sorted(by_closeness.items(), reverse=True)
        ],
        default=Value(0.0),
        output_field=FloatField(),
    )


#: The read table's columns whose distinct values SearchTerm keeps, each the
#: first column of one of its b-trees (a loose index scan reads them).
KNOWN_FIELDS = tuple(column.name for column in TABLE.known_columns())


def search_terms_rebuild(cursor) -> None:
    """Refill SearchTerm from the read table (generate_data, in its swap).

    Loose index scans of the read table's b-trees: one index descent per
    distinct value (about 11,000 names, 58 cities, 10 countries), not a
    read of millions of rows.
    """
    cursor.execute("DELETE FROM core_searchterm")
    cursor.execute(
        "INSERT INTO core_searchterm (field, value) "
        + " UNION ALL ".join(
            f"SELECT '{column}', value FROM ("
            + distinct_values_sql("core_customer_list", column)
            + ") known"
            for column in KNOWN_FIELDS
        )
    )
