"""Typo-tolerant search over customers (``?search=``), and the names it looks up.

See :func:`customer_search` for the query, and :class:`core.models.SearchTerm`
for why similar names are looked up among the distinct names rather than over
millions of customers. The functions that keep ``SearchTerm`` current live
here too, beside the query that reads it.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.search import TrigramSimilarity
from django.db import connections
from django.db.models import CharField, FloatField, Q, QuerySet, Value
from django.db.models.functions import Cast, Concat, Greatest, Upper

from core.models import AppUser, SearchTerm
from crm.replicas import read_alias

from .distinct import distinct_values_sql
from .ordering import SEARCH_RANK

#: Words of a search beyond this many are ignored.
MAX_SEARCH_WORDS = 4


def search_words(text: str) -> list[str]:
    return [word.upper() for word in text.split()][:MAX_SEARCH_WORDS]


def customer_search(queryset: QuerySet, text: str) -> QuerySet:
    """Customers matching every word of ``text``, typos allowed, ranked by similarity.

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

    The rank adds up each word's best similarity, plus the similarity of the
    whole text to the full name, so "jon smith" puts Jon Smithers and John
    Smith above Joan Smithson.
    """
    first, last = Upper("first_name"), Upper("last_name")
    rank: Any = TrigramSimilarity(
        Concat(first, Value(" "), last, output_field=CharField()), Value(text.upper())
    )
    for word in search_words(text):
        cities = similar_cities(word)
        if cities:
            queryset = queryset.filter(address__city__in=cities)
            rank = rank + TrigramSimilarity(Upper("address__city"), Value(word))
            continue
        names = similar_names(word)
        queryset = queryset.filter(
            Q(first_name__in=names["first_name"])
            | Q(last_name__in=names["last_name"])
            | Q(customer_id=word)
            | Q(phone_number__icontains=word)
        )
        rank = rank + Greatest(
            TrigramSimilarity(first, Value(word)), TrigramSimilarity(last, Value(word))
        )
    # pg_trgm's similarity() is a float4; a cursor carries the rank as a
    # double and PostgreSQL compares a float4 with it through numeric at six
    # digits, so the boundary row would come back on the next page. As a
    # double, the rank round-trips exactly.
    return queryset.alias(**{SEARCH_RANK: Cast(rank, FloatField())})


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


def search_terms_add(*customers: AppUser) -> None:
    """Make the customers' names findable by ?search= (see SearchTerm)."""
    SearchTerm.objects.bulk_create(
        [
            SearchTerm(field=field, value=getattr(customer, field))
            for customer in customers
            for field in ("first_name", "last_name")
        ],
        ignore_conflicts=True,
    )


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
