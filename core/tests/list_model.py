"""A plain-Python model of the customer list, to compare the API's answers with.

Shared by the list's tests (core/tests/api/test_list.py) and the plans' tests
(core/tests/customers/test_plans.py): the same filters, the same orderings
with their tie-breakers, the same pages, computed without SQL.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from django.test import Client
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from core.customers.ordering import FEW_TIES_PAIRS, INDEXED_ORDERS, SORT_FIELDS
from core.folding import fold
from core.models import NO_BIRTHDAY

URL = "/api/users/"


SORTABLE = list(SORT_FIELDS)


def upper(text: str) -> str:
    """PostgreSQL's upper(): simple (one-to-one) case mapping, so 'ß' stays 'ß'."""
    return "".join(c.upper() if len(c.upper()) == 1 else c for c in text)


def instant(value: str, upper_bound: bool) -> tuple[dt.datetime, bool]:
    if "T" not in value:
        start = dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), dt.UTC)
        return (start + dt.timedelta(days=1), True) if upper_bound else (start, False)
    return dt.datetime.fromisoformat(value), False


SUBSTRING = {
    "first_name": "first_name",
    "last_name": "last_name",
    "city": "city",
    "country": "country",
    "phone_number": "phone_number",
}


EXACT = {"id": "id", "gender": "gender", "customer_id": "customer_id", "city_code": "city_code"}


def matches(row: dict, name: str, value: str) -> bool:
    if name == "email":  # stored in lower case: any case finds it
        return row["email"] is not None and row["email"] == value.lower()
    if name == "phone_number":
        return upper(value) in upper(row["phone_number"])
    if name in SUBSTRING:  # names and places: folded (core.folding), ü as ue
        return fold(value) in fold(row[SUBSTRING[name]])
    if name in EXACT:
        return str(row[EXACT[name]]) == value
    if name in ("points_min", "points_max"):
        if row["points"] is None:
            return False
        return row["points"] >= int(value) if name == "points_min" else row["points"] <= int(value)
    if name in ("birthday_from", "birthday_to"):
        if row["birthday"] is None:  # an unknown birthday is in no range
            return False
        bound = dt.date.fromisoformat(value)
        return row["birthday"] >= bound if name == "birthday_from" else row["birthday"] <= bound
    column = "created" if name.startswith("created") else "last_activity"
    if row[column] is None:
        return False
    bound, exclusive = instant(value, upper_bound=name.endswith("_to"))
    if name.endswith("_from"):
        return row[column] >= bound
    return row[column] < bound if exclusive else row[column] <= bound


def sort_value(row: dict, field: str):
    return {
        "birthday": row["birthday"] or NO_BIRTHDAY,
        "email": row["email"] or "",
        "address__city": row["city"],
        "address__country": row["country"],
        "relationship__points": row["points"],
        "relationship__last_activity": row["last_activity"],
    }.get(field, row.get(field))


#: The field each field's index sorts next (README, "Ordering").
THEN = {"first_name": "last_name", "last_name": "first_name", "address__country": "address__city"}


def model_list(rows: list[dict], filters: dict[str, str], ordering: list[str]) -> list[int]:
    fields = [f.removeprefix("-") for f in ordering]
    selected = [r for r in rows if all(matches(r, k, v) for k, v in filters.items())]
    if any(f.startswith("relationship__") for f in fields):
        selected = [r for r in selected if r["points"] is not None]
    keys = [(f.removeprefix("-"), f.startswith("-")) for f in ordering]
    unique = next((i for i, (f, _) in enumerate(keys) if f in ("id", "customer_id")), None)
    if unique is not None:
        keys = keys[: unique + 1]  # a unique field leaves no ties
    else:
        # The README: the last field's ties are ordered by the field its index
        # sorts next (a last name's by the first name, a country's by the
        # city), then by the customer's id.
        then = THEN.get(keys[-1][0])
        if then and then not in fields:
            keys.append((then, keys[-1][1]))
        keys.append(("id", keys[-1][1]))

    def compare(a, b):
        for field, descending in keys:
            x, y = sort_value(a, field), sort_value(b, field)
            if x != y:
                return (-1 if x < y else 1) * (-1 if descending else 1)
        return 0

    return [r["id"] for r in sorted(selected, key=functools.cmp_to_key(compare))]


@st.composite
def filter_values(draw, rows: list[dict]) -> dict[str, str]:
    names = draw(
        st.sets(
            st.sampled_from(
                [
                    "first_name",
                    "last_name",
                    "city",
                    "country",
                    "phone_number",
                    "id",
                    "gender",
                    "customer_id",
                    "email",
                    "city_code",
                    "created_from",
                    "created_to",
                    "birthday_from",
                    "birthday_to",
                    "points_min",
                    "points_max",
                    "last_activity_from",
                    "last_activity_to",
                ]
            ),
            max_size=3,
        )
    )
    row = draw(st.sampled_from(rows))
    filters = {}
    for name in names:
        if name in SUBSTRING:
            text = row[SUBSTRING[name]]
            start = draw(st.integers(0, max(0, len(text) - 1)))
            piece = text[start : start + draw(st.integers(1, 4))]
            filters[name] = draw(st.sampled_from([piece, piece.lower(), piece.upper(), "%", "_"]))
        elif name == "email":
            address = row["email"] or "nobody@example.com"
            filters[name] = draw(st.sampled_from([address, address.upper()]))
        elif name in EXACT:
            filters[name] = str(row[EXACT[name]])
        elif name.startswith("points"):
            filters[name] = str(draw(st.integers(-5, 3000)))
        elif name.startswith("birthday"):
            filters[name] = draw(st.dates(dt.date(1930, 1, 1), dt.date(2010, 1, 1))).isoformat()
        else:
            moment = draw(st.datetimes(dt.datetime(2015, 1, 1), dt.datetime(2026, 1, 15)))
            filters[name] = draw(
                st.sampled_from(
                    [moment.date().isoformat(), moment.replace(microsecond=0).isoformat() + "Z"]
                )
            )
    for low, high in (
        ("created_from", "created_to"),
        ("birthday_from", "birthday_to"),
        ("points_min", "points_max"),
        ("last_activity_from", "last_activity_to"),
    ):
        if low in filters and high in filters:
            del filters[high]  # reversed ranges are a 400, tested separately
    return filters


@st.composite
def orderings(draw) -> list[str]:
    """Orderings the list serves (README, "Ordering"): the start of an index's
    order in one direction (``last_name,first_name``); or a field with few
    ties (or a name pair), then any fields in any direction."""
    descending = draw(st.booleans())
    if draw(st.booleans()):
        order = draw(st.sampled_from(INDEXED_ORDERS))
        fields = [(name, descending) for name in order[: draw(st.integers(1, len(order)))]]
    else:
        first = draw(st.sampled_from([n for n in SORTABLE if SORT_FIELDS[n].few_ties]))
        fields = [(first, descending)]
        if draw(st.booleans()):
            fields = [(name, descending) for name in draw(st.sampled_from(sorted(FEW_TIES_PAIRS)))]
        for name, desc in draw(
            st.lists(st.tuples(st.sampled_from(SORTABLE), st.booleans()), max_size=2)
        ):
            if name not in {f for f, _ in fields}:
                fields.append((name, desc))
    return [("-" if desc else "") + name for name, desc in fields]


HYPOTHESIS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def walk(client: Client, url: str, direction: str = "next") -> list[int]:
    ids, pages = [], 0
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        ids.extend(row["id"] for row in body["results"])
        url = body[direction]
        pages += 1
        assert pages < 1000
    return ids


def numbered_page(client: Client, params: dict[str, Any], expected: list[int]) -> dict | None:
    """Page ``params["page"]`` of ``params["page_size"]``: the model list's slice
    of ``expected`` ids, or a 404 past its end (then None, else the body)."""
    page, size = params["page"], params["page_size"]
    response = client.get(query(params))
    window = expected[(page - 1) * size : page * size]
    if not window and page > 1:
        assert response.status_code == 404
        return None
    body = response.json()
    assert [row["id"] for row in body["results"]] == window
    return body


def query(params: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    return f"{URL}?{urlencode(params)}"
