"""The matrix's oracle: what each filter, search and ordering means, written
from the README independently of :mod:`core.customers`, and the plain SQL
that counts the true matches over the join of the three tables of record
(never the read table the API reads).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.runner import plain_connection
from core.customers.ordering import SORT_FIELDS
from core.folding import fold

# -- selectivity bands -------------------------------------------------------

RARE, MEDIUM, COMMON = "rare", "medium", "common"
BANDS = (RARE, MEDIUM, COMMON)
#: Fractions of all customers: [low, high) per band (rare also needs one match).
BAND_LIMITS = {RARE: (0.0, 0.001), MEDIUM: (0.01, 0.05), COMMON: (0.20, 1.01)}
#: The fraction a range bound aims at within its band.
BAND_TARGETS = {RARE: 0.0004, MEDIUM: 0.03, COMMON: 0.4}


def band_of(matches: int, customers: int) -> str | None:
    """The band of a filter matching ``matches`` of ``customers``, or None between bands."""
    if matches < 1 or customers < 1:
        return None
    share = matches / customers
    return next((b for b in BANDS if BAND_LIMITS[b][0] <= share < BAND_LIMITS[b][1]), None)


# -- what each filter means, written independently of core.customers ------------

#: The rows a reference query reads: every customer with their address and record.
REFERENCE_FROM = (
    "core_appuser u JOIN core_address a ON a.id = u.address_id "
    "LEFT JOIN core_customerrelationship r ON r.appuser_id = u.id"
)

NO_BIRTHDAY_TEXT = "9999-12-31"


def pg_upper(text: str) -> str:
    """PostgreSQL's ``upper()``: character by character (Python maps ß to SS)."""
    return "".join(c.upper() if len(c.upper()) == 1 else c for c in text)


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def instant(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class FilterSpec:
    """How the matrix chooses values for one filter and checks its rows.

    ``kind``: ``substring`` (case-insensitive), ``folded`` (a substring of
    the name or place folded, core.folding: ``müll`` in Mueller), ``exact``, ``lower`` (at
    least) or ``upper`` (at most). ``column`` is the column in
    :data:`REFERENCE_FROM`'s aliases; ``source`` the table it is sampled
    from; ``read`` reads it from a row of the API's JSON; ``type`` says how
    a value is written in a URL (``text``, ``int``, ``date``, ``instant``).
    """

    name: str
    kind: str
    column: str
    source: str
    read: Callable[[dict], Any]
    type: str = "text"

    def sql(self, value: str) -> tuple[str, list[Any]]:
        """The reference predicate for ``value`` (as sent in the URL)."""
        if self.kind == "substring":
            return f"upper({self.column}) LIKE %s", [f"%{like_escape(pg_upper(value))}%"]
        if self.kind == "folded":
            return f"crm_fold({self.column}) LIKE %s", [f"%{like_escape(fold(value))}%"]
        operator = {"exact": "=", "lower": ">=", "upper": "<="}[self.kind]
        return f"{self.column} {operator} %s", [self.python(value)]

    def python(self, value: str) -> Any:
        if self.type == "int":
            return int(value)
        if self.type == "date":
            return dt.date.fromisoformat(value)
        if self.type == "instant":
            return instant(value)
        return value

    def holds(self, row: dict, value: str) -> bool:
        """Does ``row`` (the API's JSON) meet this filter with ``value``?"""
        actual = self.read(row)
        if actual is None:
            return False
        if self.kind == "substring":
            return pg_upper(value) in pg_upper(actual)
        if self.kind == "folded":
            return fold(value) in fold(actual)
        if self.type == "date":
            actual = dt.date.fromisoformat(actual)
        elif self.type == "instant":
            actual = instant(actual)
        wanted = self.python(value)
        if self.kind == "exact":
            return actual == wanted
        return actual >= wanted if self.kind == "lower" else actual <= wanted


def _address(name: str) -> Callable[[dict], Any]:
    return lambda row: row["address"][name]


def _record(name: str) -> Callable[[dict], Any]:
    return lambda row: (row["relationship"] or {}).get(name)


def _own(name: str) -> Callable[[dict], Any]:
    return lambda row: row[name]


APPUSER, ADDRESS, RECORD = "core_appuser", "core_address", "core_customerrelationship"

FILTERS: dict[str, FilterSpec] = {
    spec.name: spec
    for spec in (
        FilterSpec("first_name", "folded", "u.first_name", APPUSER, _own("first_name")),
        FilterSpec("last_name", "folded", "u.last_name", APPUSER, _own("last_name")),
        FilterSpec("city", "folded", "a.city", ADDRESS, _address("city")),
        FilterSpec("country", "folded", "a.country", ADDRESS, _address("country")),
        FilterSpec("phone_number", "substring", "u.phone_number", APPUSER, _own("phone_number")),
        FilterSpec("id", "exact", "u.id", APPUSER, _own("id"), "int"),
        FilterSpec("gender", "exact", "u.gender", APPUSER, _own("gender")),
        FilterSpec("customer_id", "exact", "u.customer_id", APPUSER, _own("customer_id")),
        FilterSpec("email", "exact", "u.email", APPUSER, _own("email")),
        FilterSpec("city_code", "exact", "a.city_code", ADDRESS, _address("city_code")),
        FilterSpec("created_from", "lower", "u.created", APPUSER, _own("created"), "instant"),
        FilterSpec("created_to", "upper", "u.created", APPUSER, _own("created"), "instant"),
        FilterSpec("birthday_from", "lower", "u.birthday", APPUSER, _own("birthday"), "date"),
        FilterSpec("birthday_to", "upper", "u.birthday", APPUSER, _own("birthday"), "date"),
        FilterSpec("points_min", "lower", "r.points", RECORD, _record("points"), "int"),
        FilterSpec("points_max", "upper", "r.points", RECORD, _record("points"), "int"),
        FilterSpec(
            "last_activity_from",
            "lower",
            "r.last_activity",
            RECORD,
            _record("last_activity"),
            "instant",
        ),
        FilterSpec(
            "last_activity_to",
            "upper",
            "r.last_activity",
            RECORD,
            _record("last_activity"),
            "instant",
        ),
    )
}

#: A range's two bounds: a pair whose lower bound is above its upper bound is
#: an invalid request (a 400), not a combination.
RANGE_PAIRS = {
    ("created_from", "created_to"),
    ("birthday_from", "birthday_to"),
    ("points_min", "points_max"),
    ("last_activity_from", "last_activity_to"),
}


class Reference:
    """The matrix's own connection: reference counts and data profiling.

    A connection of its own (psycopg, not Django's) so that its settings
    (parallel workers for the counts, no statement timeout) never leak into
    the API's session that the timed requests use.
    """

    def __init__(self) -> None:
        self.conn = plain_connection()
        self.conn.execute("SET statement_timeout = 0")
        self.conn.execute("SET max_parallel_workers_per_gather = 2")
        self.conn.execute("SET jit = off")
        self.conn.execute("SET TIME ZONE 'UTC'")
        self.conn.execute("SET pg_trgm.similarity_threshold = 0.25")

    def close(self) -> None:
        self.conn.close()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, params).fetchone()[0]

    def count(self, where: Sequence[tuple[str, list[Any]]]) -> int:
        """Customers meeting every predicate (reference SQL, never the API's code)."""
        clauses = [sql for sql, _ in where] or ["TRUE"]
        params = [p for _, ps in where for p in ps]
        return self.value(
            f"SELECT count(*) FROM {REFERENCE_FROM} WHERE {' AND '.join(clauses)}", params
        )


#: How many rows profiling samples per table to find candidate values.

SEARCH_MAX_WORDS = 4
CITY_SIMILARITY = 0.5


def search_sql(ref: Reference, text: str, cities: Sequence[str]) -> tuple[str, list[Any]]:
    """The reference predicate of ``search=text`` (README: "One customer, search").

    Every word must match: a word at least 0.5 trigram-similar to a city's
    name means that city; any other word must be similar (pg_trgm's ``%``)
    to the first or last name (both folded, core.folding), equal the
    customer number, or be part of the phone number.
    """
    clauses, params = [], []
    for typed in text.split()[:SEARCH_MAX_WORDS]:
        word, folded = typed.upper(), fold(typed)
        similar = [
            row[0]
            for row in ref.rows(
                "SELECT c FROM unnest(%s::text[]) c WHERE similarity(crm_fold(c), %s) >= %s",
                [list(cities), folded, CITY_SIMILARITY],
            )
        ]
        if similar:
            clauses.append("a.city = ANY(%s)")
            params.append(similar)
        else:
            # The names similar to the word, found among the known names
            # (every customer's name is one: the read table's triggers add it).
            clauses.append(
                "(u.first_name IN (SELECT value FROM core_searchterm "
                "WHERE field = 'first_name' AND crm_fold(value) %% %s) "
                "OR u.last_name IN (SELECT value FROM core_searchterm "
                "WHERE field = 'last_name' AND crm_fold(value) %% %s) "
                "OR u.customer_id = %s OR u.email = lower(%s) OR upper(u.phone_number) LIKE %s)"
            )
            params += [folded, folded, word, word, f"%{like_escape(word)}%"]
    return "(" + " AND ".join(clauses or ["TRUE"]) + ")", params


def _sort_value(name: str, row: dict) -> Any:
    if name == "birthday":
        return row["birthday"] or NO_BIRTHDAY_TEXT
    if name == "email":  # customers without one first (README, "Ordering")
        return row["email"] or ""
    if name.startswith("address__"):
        return row["address"][name.removeprefix("address__")]
    if name.startswith("relationship__"):
        value = (row["relationship"] or {}).get(name.removeprefix("relationship__"))
        return instant(value) if name.endswith("last_activity") else value
    if name in ("created", "last_updated"):
        return instant(row[name])
    return row[name]


#: The field each field's index sorts next (README, "Ordering").
THEN = {"first_name": "last_name", "last_name": "first_name", "address__country": "address__city"}


def _ordering_fields(spec: str) -> list[tuple[str, bool]]:
    return [(part.removeprefix("-"), part.startswith("-")) for part in spec.split(",") if part]


def compare(a: dict, b: dict, spec: str) -> int:
    """-1, 0 or 1: ``a`` before, level with or after ``b`` in ``spec``.

    Compares the requested fields, then the field the last one's index
    sorts next (``last_name`` then ``first_name``, ``address__country`` then
    ``address__city``), then the customer id (README, "Ordering").
    """
    fields = _ordering_fields(spec or "id")
    name, descending = fields[-1]
    then = THEN.get(name)
    if then and then not in {f for f, _ in fields}:
        # The field the last one's index sorts next orders its ties (README).
        fields.append((then, descending))
    for name, descending in fields:
        x, y = _sort_value(name, a), _sort_value(name, b)
        if x != y:
            return (1 if x > y else -1) * (-1 if descending else 1)
    name, descending = fields[-1]
    if SORT_FIELDS[name].unique:
        return 0
    if a["id"] != b["id"]:
        return (1 if a["id"] > b["id"] else -1) * (-1 if descending else 1)
    return 0
