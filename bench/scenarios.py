"""bench_list's scenarios: what to request, the same page in each variant, and how to check it.

* ``baseline``: the original's implementation (:mod:`bench.baseline`), routed
  at ``/api/baseline/users/``, with the original's parameter names;
* ``optimized``: the product, ``/api/users/``;
* ``floor``: the same page by one hand-written SQL query of the read table
  through psycopg, with no Django at all: the closest thing to what the
  hardware allows;
* ``uninstrumented`` (only when asked for): the product without
  :mod:`crm.observability`'s middleware (request ids, timings, metrics, the
  request log), raced against ``optimized`` to show what they cost.

Each scenario checks what each variant returned (status, row count, that the
filter and the sort really hold), so a fast wrong answer cannot win.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.db import connection

from core.customers.columns import GROUPS, OPTIONAL_GROUPS, ROW
from core.customers.cursors import cursor_token
from core.customers.ordering import customer_ordering
from core.customers.pagination import CustomerPagination

VARIANTS = ("baseline", "optimized", "floor", "uninstrumented")
#: What bench_list races unless --variant says otherwise.
DEFAULT_VARIANTS = ("baseline", "optimized", "floor")
OPTIMIZED_URL = "/api/users/"
BASELINE_URL = "/api/baseline/users/"

#: The floor's columns: the API's row (core.customers.columns.ROW), in its
#: order, each named like the export's flat column (``address_city``).
FLOOR_COLUMNS = ", ".join(f'c.{column.column} AS "{column.flat_name}"' for column in ROW)

FROM = "FROM core_customer_list c"


def known(field: str, text: str) -> str:
    """The floor's "``field`` contains ``text``", written the way the list asks
    it (see core.customers.known): the known values that contain it, looked
    up first and written into the statement, then an equality on the
    column's b-tree. (As a subquery, the values would be hidden from the
    planner, which then walks the id index testing every row: 478 ms for
    ``last_name=smith`` at 3M.)"""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT value FROM core_searchterm WHERE field = %s AND upper(value) LIKE %s "
            "ORDER BY value",
            [field, f"%{text.upper()}%"],
        )
        values = [value for (value,) in cursor.fetchall()]
    listed = ", ".join("'" + value.replace("'", "''").replace("%", "%%") + "'" for value in values)
    return f"c.{field} = ANY(ARRAY[{listed}]::text[])"


Rows = list[dict[str, Any]]
Check = Callable[[Rows], str | None]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    optimized: dict[str, Any]  # query parameters of /api/users/
    baseline: dict[str, Any]  # the same request in the original's parameter names
    floor: str  # one SQL statement returning FLOOR_COLUMNS
    floor_params: Sequence[Any]
    check: Check


# -- checks ---------------------------------------------------------------


def _instant(value: Any) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


def expect(
    count: int | None = None,
    at_least: int = 0,
    each: Callable[[dict], bool] | None = None,
    each_says: str = "",
    order: Callable[[dict], Any] | None = None,
    descending: bool = False,
) -> Check:
    """A check: how many rows, a predicate every row must meet, a sort order."""

    def check(rows: Rows) -> str | None:
        if count is not None and len(rows) != count:
            return f"expected {count} rows, got {len(rows)}"
        if len(rows) < at_least:
            return f"expected at least {at_least} rows, got {len(rows)}"
        if each is not None:
            wrong = [row["id"] for row in rows if not each(row)]
            if wrong:
                return f"rows {wrong[:5]} do not meet: {each_says}"
        if order is not None:
            keys = [order(row) for row in rows]
            if keys != sorted(keys, reverse=descending):
                return f"rows are not sorted by {each_says or 'the ordering'}"
        return None

    return check


def _points(row: dict) -> int:
    return row["relationship"]["points"]


# -- scenarios --------------------------------------------------------------


@dataclass(frozen=True)
class DataFacts:
    """What the scenarios need to know about the data in the database."""

    customers: int
    deep_page: int  # page 20,000 at 3M rows, scaled down for small datasets
    deep_cursor_boundary: tuple[int, int]  # (points, id) of the last row before the deep page
    rare_phone: str  # a phone-number substring that only a handful of customers share
    month: tuple[dt.date, dt.date]  # a month with sign-ups
    smiths: int  # customers whose last name contains "smith"
    viennese: int  # customers whose city contains "vienna"


#: The scenarios need a few pages of data and a city with customers.
MINIMUM_CUSTOMERS = 600


def count_customers() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM core_appuser")
        return cursor.fetchone()[0]


def data_facts() -> DataFacts:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), max(created) FROM core_appuser")
        customers, newest = cursor.fetchone()
        deep_page = max(2, min(20_000, customers // 50 // 2))
        cursor.execute(
            "SELECT points, id FROM core_customer_list WHERE points IS NOT NULL "
            "ORDER BY points DESC, id DESC OFFSET %s LIMIT 1",
            [(deep_page - 1) * 50 - 1],
        )
        boundary = cursor.fetchone()
        cursor.execute(
            "SELECT phone_number FROM core_appuser WHERE id >= %s ORDER BY id LIMIT 1",
            [max(1, customers // 2)],
        )
        phone = cursor.fetchone()[0]
        # Expected sizes, so that the checks hold on small datasets too.
        cursor.execute("SELECT count(*) FROM core_appuser WHERE upper(last_name) LIKE '%%SMITH%%'")
        smiths = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM core_address WHERE upper(city) LIKE '%%VIENNA%%'")
        viennese = cursor.fetchone()[0]
    last_month = (newest.date().replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    end = (last_month + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    return DataFacts(
        customers, deep_page, boundary, phone[-8:], (last_month, end), smiths, viennese
    )


def build_scenarios(facts: DataFacts) -> list[Scenario]:
    """The README's four scenarios first, then the ones that find the traps."""
    deep, offset = facts.deep_page, (facts.deep_page - 1) * 50
    points, boundary_id = facts.deep_cursor_boundary
    vienna = known("city", "vienna")
    cursor = cursor_token(
        customer_ordering("-relationship__points"),
        [points, boundary_id],
        False,
        salt=CustomerPagination.cursor_salt,
    )
    first, last = facts.month
    rare = facts.rare_phone
    # Page 3 of Vienna at scale; an earlier page on a small dataset.
    vienna_page = max(1, min(3, -(-facts.viennese // 50)))
    vienna_rows = min(50, facts.viennese - (vienna_page - 1) * 50)
    in_month = f"created {first}..{last}"
    return [
        Scenario(
            "initial_page",
            "the first page, no filter",
            {"page": 1, "page_size": 50},
            {"page": 1, "page_size": 50},
            f"SELECT {FLOOR_COLUMNS} {FROM} ORDER BY c.id LIMIT 50",
            [],
            expect(count=50, order=lambda r: r["id"]),
        ),
        Scenario(
            "last_name_smith",
            "substring filter on a common name",
            {"last_name": "smith", "page_size": 50},
            {"last_name__icontains": "smith", "page_size": 50},
            f"SELECT {FLOOR_COLUMNS} {FROM} WHERE {known('last_name', 'smith')} "
            "ORDER BY c.id LIMIT 50",
            [],
            expect(
                count=min(50, facts.smiths),
                each=lambda r: "smith" in r["last_name"].lower(),
                each_says="last_name contains smith",
            ),
        ),
        Scenario(
            "points_desc",
            "sorted by loyalty points, a joined column with many ties",
            {"ordering": "-relationship__points", "page_size": 50},
            {"ordering": "-relationship__points", "page_size": 50},
            f"SELECT {FLOOR_COLUMNS} {FROM} WHERE c.points IS NOT NULL "
            "ORDER BY c.points DESC, c.id DESC LIMIT 50",
            [],
            expect(count=50, order=_points, descending=True, each_says="points, descending"),
        ),
        Scenario(
            "city_vienna_page_3",
            "substring filter on the joined city, third page",
            {"city": "vienna", "page": vienna_page, "page_size": 50},
            {"address__city__icontains": "vienna", "page": vienna_page, "page_size": 50},
            f"SELECT {FLOOR_COLUMNS} {FROM} WHERE {vienna} ORDER BY c.id LIMIT 50 OFFSET %s",
            [(vienna_page - 1) * 50],
            expect(
                count=vienna_rows,
                each=lambda r: "vienna" in r["address"]["city"].lower(),
                each_says="city contains vienna",
            ),
        ),
        Scenario(
            "deep_page_number",
            f"page {deep:,} by page number",
            {"page": deep, "page_size": 50},
            {"page": deep, "page_size": 50},
            f"SELECT {FLOOR_COLUMNS} {FROM} WHERE c.id IN "
            "(SELECT id FROM core_customer_list ORDER BY id LIMIT 50 OFFSET %s) ORDER BY c.id",
            [offset],
            expect(count=50, each=lambda r: r["id"] > offset, each_says=f"id beyond {offset}"),
        ),
        Scenario(
            "deep_cursor_points",
            f"page {deep:,} by cursor, sorted by points",
            {"ordering": "-relationship__points", "page_size": 50, "cursor": cursor},
            {"ordering": "-relationship__points", "page": deep, "page_size": 50},
            f"SELECT {FLOOR_COLUMNS} {FROM} WHERE (c.points, c.id) < (%s, %s) "
            "ORDER BY c.points DESC, c.id DESC LIMIT 50",
            [points, boundary_id],
            expect(
                count=50,
                order=_points,
                descending=True,
                each=lambda r: _points(r) <= points,
                each_says=f"points at most {points}, descending",
            ),
        ),
        Scenario(
            "no_match",
            "a substring no customer has",
            {"last_name": "zzqxj", "page_size": 50},
            {"last_name__icontains": "zzqxj", "page_size": 50},
            f"SELECT {FLOOR_COLUMNS} {FROM} WHERE {known('last_name', 'zzqxj')} "
            "ORDER BY c.id LIMIT 50",
            [],
            expect(count=0),
        ),
        Scenario(
            "rare_phone",
            "a phone-number substring a handful of customers share",
            {"phone_number": rare, "page_size": 50},
            {"phone_number__icontains": rare, "page_size": 50},
            f"SELECT {FLOOR_COLUMNS} {FROM} WHERE upper(c.phone_number) LIKE %s "
            "ORDER BY c.id LIMIT 50",
            [f"%{rare.upper()}%"],
            expect(at_least=1, each=lambda r: rare in r["phone_number"], each_says=rare),
        ),
        Scenario(
            "vienna_by_points",
            "filter on the joined city, sorted by joined points",
            {"city": "vienna", "ordering": "-relationship__points", "page_size": 50},
            {
                "address__city__icontains": "vienna",
                "ordering": "-relationship__points",
                "page_size": 50,
            },
            f"SELECT {FLOOR_COLUMNS} {FROM} WHERE {vienna} AND c.points IS NOT NULL "
            "ORDER BY c.points DESC, c.id DESC LIMIT 50",
            [],
            expect(
                at_least=1,
                each=lambda r: "vienna" in r["address"]["city"].lower(),
                order=_points,
                descending=True,
                each_says="city contains vienna, points descending",
            ),
        ),
        Scenario(
            "created_last_month",
            "customers who signed up in a month, newest first",
            {"created_from": first, "created_to": last, "ordering": "-created", "page_size": 50},
            {
                "created__gte": first,
                "created__lte": f"{last}T23:59:59.999999+00:00",
                "ordering": "-created",
                "page_size": 50,
            },
            f"SELECT {FLOOR_COLUMNS} {FROM} WHERE c.created >= %s AND c.created < %s "
            "ORDER BY c.created DESC, c.id DESC LIMIT 50",
            [first, last + dt.timedelta(days=1)],
            expect(
                at_least=1,
                each=lambda r: first <= _instant(r["created"]).date() <= last,
                order=lambda r: _instant(r["created"]),
                descending=True,
                each_says=in_month,
            ),
        ),
        Scenario(
            "page_size_500",
            "the largest page",
            {"page_size": 500},
            {"page_size": 500},
            f"SELECT {FLOOR_COLUMNS} {FROM} ORDER BY c.id LIMIT 500",
            [],
            expect(count=min(500, facts.customers), order=lambda r: r["id"]),
        ),
    ]


def floor_body_sql(scenario: Scenario) -> str:
    """The scenario's floor query wrapped so that PostgreSQL builds the whole
    response body: ``{"count": null, …, "results": [<row>, …]}``, each row
    nested like the API's (``address`` and ``relationship`` objects)."""

    def pairs(group: str | None) -> str:
        return ", ".join(
            f"'{column.name}', p.\"{column.flat_name}\"" for column in ROW if column.group == group
        )

    parts = [pairs(None)]
    for group in GROUPS:
        nested = f"json_build_object({pairs(group)})"
        marker = OPTIONAL_GROUPS.get(group)
        if marker is not None:
            nested = f'CASE WHEN p."{group}_{marker}" IS NULL THEN NULL ELSE {nested} END'
        parts.append(f"'{group}', {nested}")
    row = f"json_build_object({', '.join(parts)})"
    return (
        "SELECT json_build_object('count', NULL, 'next', NULL, 'previous', NULL, "
        f"'results', coalesce(json_agg({row}), '[]'::json))::text FROM ({scenario.floor}) p"
    )


def scenario_url(scenario: Scenario, variant: str) -> str:
    """What a variant requests: a URL, or for the floor its SQL."""
    if variant in ("optimized", "uninstrumented"):
        return f"{OPTIMIZED_URL}?{urlencode(scenario.optimized)}"
    if variant == "baseline":
        return f"{BASELINE_URL}?{urlencode(scenario.baseline)}"
    return "sql: " + " ".join(scenario.floor.split())
