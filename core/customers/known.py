"""Every text a request looks up among the known values, in one statement.

``?last_name=sm`` and ``?search=jon`` look their text up among the distinct
first names, last names, cities and countries (:class:`core.models.SearchTerm`)
before any customer is read, and the page statement then compares the
customers' columns with the values found (``last_name IN ('Smith', …)``).
As a subquery of the page statement, the look-up would hide those values
from PostgreSQL's planner, which then guesses how many customers carry
them: ``country=germany&points_min=5000`` read the 471,403 Germans through
the country index to find the 4,103 with enough points, where the points
index reads 26,725 (271 ms against 12). So every look-up of a request is made
first, all in one statement (:func:`look_up`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db import connections

from core.folding import FUNCTION, fold
from core.models import CustomerRow
from core.read_table import Search, read_table
from crm.replicas import read_alias

from . import tunables


@dataclass(frozen=True)
class Containing:
    """The known values of ``field`` that contain ``text``, any case, folded
    (:mod:`core.folding`: ``müll`` is in Mueller, ``muel`` in Müller)."""

    field: str
    text: str

    def sql(self, slot: int) -> tuple[str, list]:
        text = fold(self.text)
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return (
            "(SELECT %s, field, value FROM core_searchterm "
            f"WHERE field = %s AND {FUNCTION}(value) LIKE %s LIMIT %s)",
            [slot, self.field, pattern + "%", tunables.MAX_VALUES + 1],
        )


#: The columns whose known values a search word may be similar to: names, and places.
NAMES = [c.name for c in read_table(CustomerRow).columns if c.listed.search is Search.NAME]
PLACES = [c.name for c in read_table(CustomerRow).columns if c.listed.search is Search.PLACE]


@dataclass(frozen=True)
class Similar:
    """The names trigram-similar to ``word`` (pg_trgm's ``%``, through
    SearchTerm's trigram index), and the places clearly similar to it, both
    folded (:mod:`core.folding`: ``mueller`` is ``Müller``)."""

    word: str

    def sql(self, slot: int) -> tuple[str, list]:
        word = fold(self.word)
        return (
            "(SELECT %s, field, value FROM core_searchterm "
            f"WHERE {FUNCTION}(value) %% %s AND field = ANY(%s) "
            "UNION ALL SELECT %s, field, value FROM core_searchterm "
            f"WHERE field = ANY(%s) AND similarity({FUNCTION}(value), %s) >= %s)",
            [slot, word, NAMES, slot, PLACES, word, tunables.CITY_SIMILARITY],
        )


def look_up(requests: list[Containing | Similar]) -> list[dict[str, list[str]]]:
    """Each request's values by field, in one statement (none if there are no
    requests): ``[{"last_name": ["Smith", …]}, …]``, sorted."""
    if not requests:
        return []
    parts = [request.sql(slot) for slot, request in enumerate(requests)]
    sql = " UNION ALL ".join(part for part, _ in parts)
    found: list[dict[str, list[str]]] = [defaultdict(list) for _ in requests]
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(sql, [param for _, params in parts for param in params])
        for slot, field, value in cursor.fetchall():
            found[slot][field].append(value)
    return [{field: sorted(values) for field, values in slot.items()} for slot in found]
