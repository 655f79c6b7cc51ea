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

from core.customers.ordering import SORT_FIELDS
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
    if name in SUBSTRING:
        return upper(value) in upper(row[SUBSTRING[name]])
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
        "address__city": row["city"],
        "address__country": row["country"],
        "relationship__points": row["points"],
        "relationship__last_activity": row["last_activity"],
    }.get(field, row.get(field))


def model_list(rows: list[dict], filters: dict[str, str], ordering: list[str]) -> list[int]:
    fields = [f.removeprefix("-") for f in ordering]
    selected = [r for r in rows if all(matches(r, k, v) for k, v in filters.items())]
    if any(f.startswith("relationship__") for f in fields):
        selected = [r for r in selected if r["points"] is not None]
    keys = [(f.removeprefix("-"), f.startswith("-")) for f in ordering]
    then = SORT_FIELDS[fields[-1]].then
    if then and then not in fields:
        # The field the last one's index sorts next orders its ties.
        keys.append((then, keys[-1][1]))
    if fields[-1] not in ("id", "customer_id"):
        descending = keys[-1][1]
        if all(f.startswith("address__") for f, _ in keys):
            keys.append(("address_id", descending))
        keys.append(("id", descending))

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
    """Orderings the list serves (see core.customers.ordering.check_servable):
    one field; a field with few ties, then any; a name pair, then any; the
    country and city."""
    first, descending = draw(st.sampled_from(SORTABLE)), draw(st.booleans())
    fields = [(first, descending)]
    spec = SORT_FIELDS[first]
    followers_allowed = spec.few_ties
    if spec.then and draw(st.booleans()):
        fields.append((spec.then, descending))
        followers_allowed = spec.then_few_ties
    if followers_allowed:
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
