"""Typo-tolerant search over customers (``?search=``), and the names it looks up.

See :func:`customer_search` for the query, and :class:`core.models.SearchTerm`
for why similar names are looked up among the distinct names rather than over
millions of customers. The trigger ``appuser_names_known`` adds each name a
customer write brings (migration 0008); generate_data refills the table with
:func:`search_terms_rebuild`, beside the query that reads it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models import Case, FloatField, Q, QuerySet, Value, When
from django.db.models.functions import Cast, Greatest

from core.models import AppUser
from crm.replicas import read_alias

from .distinct import distinct_values_sql
from .filters import CustomerFilter
from .ordering import SEARCH_RANK

#: Words of a search beyond this many are ignored.
MAX_SEARCH_WORDS = 4


def search_words(text: str) -> list[str]:
    return [word.upper() for word in text.split()][:MAX_SEARCH_WORDS]


@dataclass(frozen=True)
class SearchMatch:
    """What ``?search=`` means in SQL: the condition every word must meet, and
    the rank that orders the matches (see :func:`customer_search`)."""

    condition: Q
    rank: Any
    #: A search of one word that is no city: the ways a customer can match it
    #: (a first name, a last name, ...), each an index of its own.
    branches: tuple[Q, ...] | None = None

    def members(self, customers: QuerySet, column: str) -> QuerySet:
        """``column`` of the matching ``customers``, for a membership set.

        One word: the union of its branches, each read from its own index.
        PostgreSQL answers the condition as one bitmap of those indexes,
        which it must check against the table's rows (47,002 customers named
        like "alexandre" in 52 ms at 3M); the names' b-trees hold both names,
        the id and the address_id, so the union reads no row at all (5 ms).
        """
        if self.branches is None:
            return customers.filter(self.condition).values(column)
        first, *others = [customers.filter(branch).values(column) for branch in self.branches]
        return first.union(*others, all=True)

    def apply(self, queryset: QuerySet) -> QuerySet:
        """Customers of ``queryset`` that match, ranked."""
        return self.ranked(queryset).filter(self.condition)

    def ranked(self, queryset: QuerySet) -> QuerySet:
        """``queryset`` with the rank to order by, and no condition: where the
        matches are tested elsewhere (a membership set, see
        :func:`core.customers.selectors.customer_list`)."""
        # A double, so that a cursor carries the rank exactly: a float4 compared
        # with the cursor's double goes through numeric at six digits, and the
        # boundary row would come back on the next page.
        return queryset.alias(**{SEARCH_RANK: Cast(self.rank, FloatField())})


def customer_search(queryset: QuerySet, text: str) -> QuerySet:
    """Customers of ``queryset`` matching ``text`` (see :func:`search_match`), ranked."""
    return search_match(text).apply(queryset)


def search_match(text: str) -> SearchMatch:
    """Customers matching every word of ``text``, typos allowed, the closest first.

    A word that is clearly similar to a city's name (see CITY_SIMILARITY)
    keeps that city's customers; any other word must be trigram-similar to
    the first or last name (pg_trgm's ``%``, with
    ``pg_trgm.similarity_threshold`` at 0.25 on this project's sessions), be
    the customer number, or be part of the phone number. Similar names are
    looked up among the distinct names (SearchTerm, a millisecond), and the
    customers who bear them through the names' b-trees.

    Why cities are told apart first: a condition "name matches OR city
    matches" spans two tables, and PostgreSQL can then only test it row by
    row after joining 3M customers to 3M addresses (measured: 6.8 s). Split
    this way, every word is a bitmap OR of trigram and b-tree index scans on
    one table. The few city names come from the ``(city, id)`` index.

    The rank adds up, for each word, how close the nearer of the first and
    last name (or the city) is to it (:func:`closeness`: 1 for the same word,
    less for each edit). Trigram similarity finds the candidates but ranks
    them poorly: it puts "Joe" (0.33) above "John" (0.29) for "jon", while
    John is the same name with one letter more, and "Jon Smith" itself above
    neither. The closeness of each candidate name is computed here, once per
    distinct name, and reaches SQL as a ``CASE`` over those names.
    """
    rank: Any = Value(0.0)
    condition = Q()
    words = search_words(text)
    branches = None
    for word in words:
        cities = similar_cities(word)
        if cities:
            condition &= Q(address__city__in=cities)
            rank = rank + closeness_case("address__city", word, cities)
            continue
        names = similar_names(word)
        ways = (
            Q(first_name__in=names["first_name"]),
            Q(last_name__in=names["last_name"]),
            Q(customer_id=word),
            # As ?phone_number= looks it up (a word without a trigram would
            # make the trigram index return every customer to recheck:
            # search=a+e+i+o took 1.4 s at 3M, tested on each row 0.5 s).
            CustomerFilter.base_filters["phone_number"].condition(word),
        )
        condition &= ways[0] | ways[1] | ways[2] | ways[3]
        if len(words) == 1:
            branches = ways
        rank = rank + Greatest(
            closeness_case("first_name", word, names["first_name"]),
            closeness_case("last_name", word, names["last_name"]),
        )
    return SearchMatch(condition, rank, branches)


def closeness(word: str, name: str) -> float:
    """How close ``name`` is to the searched ``word``: 1 when equal (any case),
    less by each edit (a letter inserted, deleted, replaced, or two
    neighbours swapped), relative to the longer of the two.

    "JON": John and Joan 0.75, Joe 0.67, Jonathan 0.38. "SMIHT": Smith 0.8.
    """
    a, b = word.upper(), name.upper()
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


def closeness_case(field: str, word: str, values: list[str]) -> Any:
    """``CASE WHEN field IN (…) THEN closeness …`` for the candidate ``values``
    (one branch per distinct closeness, closest first; 0 for any other value)."""
    by_closeness: dict[float, list[str]] = defaultdict(list)
    for value in values:
        by_closeness[closeness(word, value)].append(value)
    if not by_closeness:
        return Value(0.0)
    return Case(
        *[
            When(**{f"{field}__in": names}, then=Value(score))
            for score, names in sorted(by_closeness.items(), reverse=True)
        ],
        default=Value(0.0),
        output_field=FloatField(),
    )


#: How similar a word must be to a city's name to be read as that city: well
#: above the names' 0.25, so that "mary" (0.25 to "Marseille") stays a name
#: while "viena" (0.63 to "Vienna") is the city.
CITY_SIMILARITY = 0.5


def similar_names(word: str) -> dict[str, list[str]]:
    """First and last names trigram-similar to ``word`` (see SearchTerm)."""
    names: dict[str, list[str]] = {"first_name": [], "last_name": []}
    with connections[read_alias()].cursor() as cursor:
        cursor.execute("SELECT field, value FROM core_searchterm WHERE upper(value) %% %s", [word])
        for field, value in cursor.fetchall():
            names[field].append(value)
    return names


def similar_cities(word: str) -> list[str]:
    """Names of cities trigram-similar to ``word`` (a loose scan of the city index)."""
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(
            f"SELECT value FROM ({distinct_values_sql('core_address', 'city')}) "
            "cities WHERE similarity(upper(value), %s) >= %s",
            [word, CITY_SIMILARITY],
        )
        return [row[0] for row in cursor.fetchall()]


def search_terms_rebuild(cursor) -> None:
    """Refill SearchTerm from the customers' names (generate_data, after its swap).

    Loose index scans of the name b-trees: one index descent per distinct
    name (about 15,000), not a read of millions of rows.
    """
    cursor.execute("DELETE FROM core_searchterm")
    cursor.execute(
        "INSERT INTO core_searchterm (field, value) "
        + " UNION ALL ".join(
            f"SELECT '{field}', value FROM ("
            + distinct_values_sql(AppUser._meta.db_table, field)
            + ") names"
            for field in ("first_name", "last_name")
        )
    )
