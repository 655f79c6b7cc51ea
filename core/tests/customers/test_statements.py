"""Page statements compiled once per shape: a kept statement, given another
request's values, is exactly the statement compiled afresh for it."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.db.models import Q
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import strategies as st

from core.api.params import LIST_PARAMETERS
from core.customers import page_statement as pages
from core.customers import plans, selectors
from core.customers.ordering import customer_ordering
from core.customers.statements import (
    SENTINELS,
    Param,
    StatementCache,
    compile_statement,
    compiling_shape,
    param_values,
    shape_of,
)
from core.customers.tunables import STATEMENT_CACHE_SIZE
from core.tests.clients import api_client
from core.tests.list_model import HYPOTHESIS, filter_values, orderings, query

pytestmark = pytest.mark.django_db


def statement_text(plan: plans.Plan, *, fresh: bool) -> str:
    """The page statement with its values, as PostgreSQL receives it: from
    the process's statements, or compiled afresh."""
    kept = pages.PAGE_STATEMENTS
    if fresh:
        pages.PAGE_STATEMENTS = StatementCache(1)
    try:
        sql, params = pages.page_statement(plan)
    finally:
        pages.PAGE_STATEMENTS = kept
    with connection.cursor() as cursor:
        return cursor.cursor.mogrify(sql, params)


def plan_of(
    customers: selectors.CustomerQuery,
    *,
    reverse: bool = False,
    offset: int = 0,
    limit: int,
    boundary: list | None = None,
    count: str,
    forced: str | None = None,
) -> plans.Plan:
    position = plans.PagePosition(
        offset, limit, None if boundary is None else tuple(boundary), reverse
    )
    return plans.plan(customers, position, count, forced=forced)


def list_of(params: dict) -> selectors.CustomerQuery:
    validated = LIST_PARAMETERS.validate(QueryDict(query(params).split("?", 1)[1]))
    return selectors.customer_list(
        filters=validated.filters, ordering=validated.ordering, search=validated.search
    )


@HYPOTHESIS
@given(
    data=st.data(),
    ordering=orderings(),
    reverse=st.booleans(),
    offset=st.integers(0, 120),
    limit=st.integers(1, 501),
    count=st.sampled_from(["none", "estimated", "bounded", "exact"]),
    cursor=st.booleans(),
    forced=st.sampled_from([None, None, "walk", "sort"]),
)
def test_a_kept_statement_given_new_values_is_the_statement_compiled_afresh(
    dataset, data, ordering, reverse, offset, limit, count, cursor, forced
):
    """Requests drawn from few values repeat their shapes, so most of them
    take a statement another request compiled."""
    filters = data.draw(filter_values(dataset))
    search = data.draw(st.sampled_from([None, "ann", "smith 1234", "vienna jo"]))
    # A search without an ordering is ordered by its rank (an annotation).
    ranked = search is not None and data.draw(st.booleans())
    customers = list_of(
        filters
        | ({} if ranked else {"ordering": ",".join(ordering)})
        | ({"search": search} if search else {})
    )
    boundary = None
    if cursor:
        boundary = [KEY_VALUES[key.kind] for key in customers.ordering.keys]
    plan = plan_of(
        customers,
        reverse=reverse,
        offset=offset,
        limit=limit,
        boundary=boundary,
        count=count,
        forced=forced,
    )
    assert statement_text(plan, fresh=False) == statement_text(plan, fresh=True)


#: A key value of each kind, as a cursor carries it.
KEY_VALUES = {
    "int": 7,
    "str": "M",
    "float": 0.5,
    "date": dt.date(2000, 1, 2),
    "datetime": dt.datetime(2024, 5, 6, tzinfo=dt.UTC),
}


def test_requests_that_differ_only_in_values_share_one_statement(dataset, settings):
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": None}
    pages.PAGE_STATEMENTS.clear()
    client = api_client()
    urls = [
        "/api/users/?points_min=10&created_from=2020-01-01&ordering=-relationship__points",
        "/api/users/?points_min=900&created_from=2023-05-01&ordering=-relationship__points",
        "/api/users/?points_min=10&created_from=2020-01-01&ordering=-relationship__points&page_size=2&page=2",
        "/api/users/?points_min=10&created_from=2020-01-01&ordering=-relationship__points&page_size=3&page=3",
    ]
    for url in urls:
        assert client.get(url).status_code == 200
    # Cursor pages and numbered pages are two shapes; any page of any size one.
    assert pages.PAGE_STATEMENTS.misses <= 3
    assert pages.PAGE_STATEMENTS.hits >= 1
    before = pages.PAGE_STATEMENTS.hits
    with CaptureQueriesContext(connection) as queries:
        client.get(urls[1])
    assert pages.PAGE_STATEMENTS.hits == before + 1
    assert len(queries) == 1  # the page; no statement to prepare a statement


def test_a_value_outside_a_param_is_part_of_the_shape():
    """A value the ORM writes into the text (not a Param) must never be
    reused for another value: it makes a shape of its own."""
    assert shape_of(Q(points__gte=Param(5))) == shape_of(Q(points__gte=Param(900)))
    assert shape_of(Q(points__gte=5)) != shape_of(Q(points__gte=900))
    assert shape_of(Q(points__gte=Param(5))) != shape_of(Q(points__lte=Param(5)))
    assert shape_of(Q(points__gte=Param(5))) != shape_of(Q(points__gte=Param("5")))


def test_params_are_found_by_their_place_in_the_conditions_and_left_as_built():
    first = Q(points__gte=Param(1)) & Q(city=Param("Vienna")) | Q(id=Param(3))
    second = Q(points__gte=Param(2)) & Q(city=Param("Graz")) | Q(id=Param(4))
    assert param_values(first) == {0: 1, 1: "Vienna", 2: 3}
    assert param_values(second) == {0: 2, 1: "Graz", 2: 4}
    assert first == second  # one shape: no Param was given a number


def test_a_param_in_two_places_takes_one_value():
    bound = Param(5)
    where = Q(points__gte=bound)
    with compiling_shape():
        statement = compile_statement("SELECT %s, %s", [bound, bound], where, where)
    assert statement.params(param_values(where, where)) == [5, 5]


def test_limits_and_offsets_become_placeholders():
    sql = f"SELECT 1 LIMIT {SENTINELS['limit']} OFFSET {SENTINELS['offset']} -- 5%% of %s"
    with compiling_shape():
        statement = compile_statement(sql, [Param("x", slot="word")])
    assert statement.sql == "SELECT 1 LIMIT %s OFFSET %s -- 5%% of %s"
    assert statement.params({"limit": 51, "offset": 100, "word": "y"}) == [51, 100, "y"]


def test_the_least_recently_used_statement_goes_first():
    cache = StatementCache(2)
    built = []

    def build(name):
        def make():
            built.append(name)
            return compile_statement(f"SELECT '{name}'", [])

        return make

    cache.get("a", build("a"))
    cache.get("b", build("b"))
    cache.get("a", build("a"))  # a is now the most recent
    cache.get("c", build("c"))  # b goes
    cache.get("a", build("a"))
    cache.get("b", build("b"))
    assert built == ["a", "b", "c", "b"]
    assert len(cache) == 2


def test_a_matrix_run_keeps_every_statement(dataset, settings):
    """STATEMENT_CACHE_SIZE holds the shapes of the published bench_matrix
    run at 3M on seed 1 (300 combinations chosen to differ, and their next
    pages), its latest run."""
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": None}
    published = Path(settings.BASE_DIR) / "docs/benchmarks/matrix-3m/matrix.csv"
    with published.open() as file:
        rows = [row for row in csv.DictReader(file) if row["seed"] == "1"]
    last_run = rows[-1]["run"]
    urls = [r["url"] for r in rows if r["run"] == last_run and "cursor=" not in r["url"]]
    assert len(urls) > 200
    pages.PAGE_STATEMENTS.clear()
    client = api_client()
    for url in urls:
        response = client.get(url)
        if response.status_code == 200 and response.json()["next"]:
            parts = urlsplit(response.json()["next"])
            client.get(f"{parts.path}?{parts.query}")
    # With room, but not too much: no more than twice the shapes.
    assert 100 < len(pages.PAGE_STATEMENTS) <= STATEMENT_CACHE_SIZE < 2 * len(pages.PAGE_STATEMENTS)
    assert pages.PAGE_STATEMENTS.misses == len(pages.PAGE_STATEMENTS)  # none dropped


def test_a_walk_bound_and_its_filter_take_their_own_values(dataset):
    """A filter on the ordering's field is also where the walk starts: the
    same condition in two places of the statement."""
    pages.PAGE_STATEMENTS.clear()
    for low in ("2019-01-01", "2024-06-01"):
        customers = selectors.customer_list(
            filters=dict(LIST_PARAMETERS.validate(QueryDict(f"created_from={low}")).filters),
            ordering=customer_ordering("created"),
        )
        plan = plan_of(customers, limit=11, count="exact")
        assert statement_text(plan, fresh=False) == statement_text(plan, fresh=True)


def test_no_statement_is_prepared_on_the_server(dataset, settings):
    """Behind PgBouncer in transaction mode a prepared statement may be asked
    of a server connection that never saw it: the list binds its values on
    the client (Django's default, bench_profile --json measures why), so the
    session keeps none, however often a shape repeats."""
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": None}
    client = api_client()
    for _ in range(8):  # psycopg would prepare from the sixth run on
        assert client.get("/api/users/?last_name=smi&ordering=-created").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cursor.fetchone()[0] == 0
