"""The list's plans: walk, sort, or a bounded walk that falls back to a sort;
every plan returns the same pages, and each is chosen where it is cheaper."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import strategies as st

from core.customers import plans, selectors
from core.customers.filters import RANGES, CustomerFilter
from core.customers.ordering import customer_ordering
from core.customers.page_statement import columns_of, page_statement
from core.customers.plans import Estimate, PagePosition, walk_budget
from core.customers.sample import ListSample, samples
from core.models import AppUser, CustomerRelationship, CustomerRow
from core.tests.clients import api_client
from core.tests.list_model import (
    HYPOTHESIS,
    filter_values,
    model_list,
    numbered_page,
    orderings,
    query,
    walk,
)

pytestmark = pytest.mark.django_db


def forced(kind: str):
    """``walk_budget`` made to sort at once, to walk as far as it likes, or to
    walk no further than the rows it needs, so that the walk comes up short
    and falls back to the sort unless each entry matches: each plan forced
    on a small table."""

    def budget(estimate: Estimate, expected: float, needed: int, follows: float) -> int:
        return {"sort": 0, "walk": 10**9, "fallback": needed}[kind]

    return budget


@pytest.fixture(params=["chosen", "sort", "walk", "fallback"])
def plan_kind(request, monkeypatch):
    if request.param != "chosen":
        monkeypatch.setattr(plans, "walk_budget", forced(request.param))
    return request.param


@HYPOTHESIS
@given(data=st.data(), ordering=orderings(), size=st.integers(2, 40))
def test_every_plan_pages_through_exactly_the_model_rows(dataset, plan_kind, data, ordering, size):
    filters = data.draw(filter_values(dataset))
    expected = model_list(dataset, filters, ordering)
    url = query({**filters, "ordering": ",".join(ordering), "page_size": size})
    assert walk(api_client(), url) == expected


@HYPOTHESIS
@given(data=st.data(), ordering=orderings(), size=st.integers(1, 40), page=st.integers(1, 8))
def test_every_plan_numbers_pages_and_counts_like_the_model(
    dataset, plan_kind, data, ordering, size, page
):
    filters = data.draw(filter_values(dataset))
    expected = model_list(dataset, filters, ordering)
    params = {**filters, "ordering": ",".join(ordering), "page_size": size, "page": page}
    body = numbered_page(api_client(), params, expected)
    if body is None:
        return
    # The default count is exact under the threshold (10,000): here, always.
    assert (body["count"], body["count_is_estimate"]) == (len(expected), False)


def first_page(customers: selectors.CustomerQuery, *, limit: int = 51) -> plans.Plan:
    return plans.plan(customers, PagePosition(0, limit), plans.NONE)


def walk_entries(customers: selectors.CustomerQuery, needed: int) -> float:
    sample = samples.get("default")
    sampled = {id(c): c.test(sample) for c in (*customers.conditions, *customers.bounds)}
    return plans.walk_entries(customers, PagePosition(0, needed), sample, sampled)


def explain(customers, *, limit: int = 51) -> str:
    sql, params = page_statement(first_page(customers, limit=limit))
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_a_walk_reads_the_orderings_index_and_tests_each_row(dataset, monkeypatch):
    monkeypatch.setattr(plans, "walk_budget", forced("walk"))
    customers = selectors.customer_list(
        filters={"points_min": 100, "city": "vienna"}, ordering=customer_ordering("created")
    )
    plan = explain(customers)
    assert "customer_list_created" in plan, plan
    # The city's look-up was made first: its values are in the statement.
    assert "'Vienna'" in plan, plan
    assert "IS TRUE" in plan, plan


def test_a_sort_reads_the_matches_through_the_narrowest_filters_index(dataset, monkeypatch):
    monkeypatch.setattr(plans, "walk_budget", forced("sort"))
    customers = selectors.customer_list(
        filters={"customer_id": "EDGE-1", "gender": "o"}, ordering=customer_ordering("created")
    )
    plan = explain(customers)
    assert "+ '00:00:00'::interval" in plan or "interval" in plan, plan
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        assert "customer_list_customer_id" in explain(customers)


def test_a_walk_that_comes_up_short_falls_back_to_the_sort(dataset, monkeypatch):
    """A walk bounded to a few entries finds too few matches: the statement
    sorts the matches instead, and the page is the model's."""
    monkeypatch.setattr(plans, "walk_budget", forced("fallback"))
    customers = selectors.customer_list(
        filters={"gender": "o"}, ordering=customer_ordering("-created")
    )
    assert "fallback" in explain(customers)
    expected = model_list(dataset, {"gender": "o"}, ["-created"])
    assert walk(api_client(), query({"gender": "o", "ordering": "-created"})) == expected


def test_a_list_request_is_one_statement_and_two_with_a_text_look_up(dataset):
    client = api_client()
    for url, statements in (
        ("/api/users/?points_min=100&ordering=-relationship__points", 1),
        ("/api/users/?created_from=2020-01-01&gender=f&count=exact", 1),
        ("/api/users/?city=vienna&last_name=smi&ordering=last_name", 2),
        ("/api/users/?search=smith&country=austria", 2),
    ):
        client.get(url)  # the sample, the token: read once
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        listed = [
            q
            for q in captured.captured_queries
            if "core_customer_list" in q["sql"] or "core_searchterm" in q["sql"]
        ]
        assert len(listed) == statements, [q["sql"][:120] for q in listed]


# -- the rule, at the sizes it is made for ----------------------------------------

MILLION = 3_000_000


def test_few_matches_are_sorted_many_are_walked():
    # 1,200 customers with 68,462 points or more, ordered by birthday: a walk
    # expects 51 * 2,500 entries, a sort reads 1,200.
    rare = Estimate(MILLION, 1_200, 1_200)
    assert walk_budget(rare, expected=51 * MILLION / 1_200, needed=51, follows=0) == 0
    # 40% of customers: the first 130 birthdays hold the page.
    common = Estimate(MILLION, 1_200_000, MILLION, follows=1)
    assert walk_budget(common, expected=130, needed=51, follows=0) >= 130


def test_a_walk_is_given_what_the_sort_would_cost():
    estimate = Estimate(MILLION, 30_000, 90_000)
    budget = walk_budget(estimate, expected=1_000, needed=51, follows=0)
    walked = budget * (plans.row_us(0) + plans.INDEX_ENTRY_US)
    assert walked == pytest.approx(plans.sort_us(estimate), rel=0.01)
    # Expected to need more than that, or needing more rows: not tried.
    assert walk_budget(estimate, expected=budget + 1, needed=51, follows=0) == 0
    assert walk_budget(estimate, expected=1_000, needed=budget + 1, follows=0) == 0
    # A walk in the table's own order reads rows faster: it may read more.
    assert walk_budget(estimate, expected=1_000, needed=51, follows=1) > budget * 5


@given(
    matches=st.integers(0, 10 * MILLION),
    reads=st.integers(0, 10 * MILLION),
    entries=st.integers(0, 10 * MILLION),
    follows=st.floats(0, 1),
    walk_follows=st.floats(0, 1),
)
def test_a_walk_that_falls_back_costs_at_most_twice_the_sort(
    matches, reads, entries, follows, walk_follows
):
    """Whatever the estimate: the walk's rows, the index entries read again to
    learn that the index went on past the budget, then the sort."""
    estimate = Estimate(10 * MILLION, matches, reads, follows, entries)
    budget = walk_budget(estimate, expected=0, needed=0, follows=walk_follows)
    spent = budget * (plans.row_us(walk_follows) + plans.INDEX_ENTRY_US)
    assert spent + plans.sort_us(estimate) <= 2 * plans.sort_us(estimate) + 1e-6


def test_a_scan_replaces_an_index_that_would_read_too_many_customers():
    assert plans.index_reads_pay(0, MILLION // 100, MILLION, follows=0)
    assert not plans.index_reads_pay(0, MILLION // 2, MILLION, follows=0)
    # A range of the sign-up time reads the table in its own order.
    assert plans.index_reads_pay(0, MILLION // 2, MILLION, follows=1)
    # Intersecting two indexes' entries first spares reading rows.
    assert plans.index_reads_pay(MILLION // 10, MILLION // 1000, MILLION, follows=0)


def test_counts_are_exact_where_cheap_and_estimated_where_many_match():
    threshold = 10_000
    assert plans.count_plan(Estimate(MILLION, 500, 500), "estimated", threshold) == plans.BOUNDED
    many = Estimate(MILLION, 500_000, 500_000)
    assert plans.count_plan(many, "estimated", threshold) == plans.SAMPLED
    assert plans.count_plan(many, "exact", threshold) == plans.EXACT
    assert plans.count_plan(many, "none", threshold) == plans.NONE
    # Few matches, but finding them reads every customer: the estimate stands.
    costly = Estimate(MILLION, 3_000, MILLION, follows=1)
    assert plans.count_plan(costly, "estimated", threshold) == plans.SAMPLED


# -- the sample's walk ------------------------------------------------------------


def test_the_sample_sees_matches_at_the_far_end_of_a_walk(dataset):
    """Customers are written in id order, so their sign-up dates follow the
    ids: the newest come last in a walk by id, first in a walk by -id."""
    newest = sorted(row["created"] for row in dataset)[-len(dataset) // 4]
    filters = {"created_from": (newest, False)}
    by_id = selectors.customer_list(filters=filters, ordering=customer_ordering("id"))
    by_newest = selectors.customer_list(filters=filters, ordering=customer_ordering("-id"))
    assert walk_entries(by_id, 5) > 0.6 * len(dataset)
    assert walk_entries(by_newest, 5) < 0.1 * len(dataset)


def test_a_filter_on_the_walked_field_bounds_the_walk(dataset):
    customers = selectors.customer_list(
        filters={"points_min": 1000}, ordering=customer_ordering("-relationship__points")
    )
    assert "customer_list_points" in explain(customers)
    # Every match lies at the start of the walk: a walk, not a sort.
    assert walk_entries(customers, 5) <= 6


def test_a_cursor_inside_the_ties_of_its_first_key_walks_from_its_later_keys():
    """A walk by -country, -city, -id from a cursor deep inside one
    country's ties, filtered on the oldest half of the customers: the index
    goes on from that city and id, where the old customers come next, not
    from the first of the country's customers (the newest, in a walk of
    descending ids). Priced from the country alone, the walk looked like
    thousands of entries and the page was sorted: 587 ms for a 1.4 ms walk.
    """
    rng = np.random.default_rng(4)
    size = 20_000
    sample = ListSample(
        MILLION,
        {
            "id": np.arange(size, dtype=float),
            "country": rng.choice(["Austria", "Germany"], size),
            "city": rng.choice([f"City {n}" for n in range(10)], size),
        },
    )
    oldest_half = sample.columns["id"] < size / 2
    keys = [("country", True), ("city", True), ("id", True)]
    cursor = ("Germany", "City 5", size / 2 - 100)
    walked = sample.walk(keys, oldest_half, sample.everyone(), cursor, needed=51)
    assert walked <= 3 * sample.scale
    # From the start, the newest of Germany's last city come first: ~500 of them.
    assert sample.walk(keys, oldest_half, sample.everyone(), None, 51) > 300 * sample.scale


def test_a_walk_by_last_update_starts_where_the_sign_ups_do(dataset):
    """Nobody is updated before being created (a constraint of the table), so
    a walk by last update with a lower bound on sign-up starts at that bound."""
    since = sorted(row["created"] for row in dataset)[len(dataset) // 2]
    customers = selectors.customer_list(
        filters={"created_from": (since, False)}, ordering=customer_ordering("last_updated")
    )
    assert "last_updated" in str(first_page(customers).start)
    customer = AppUser.objects.first()
    with pytest.raises(IntegrityError), transaction.atomic():
        AppUser.objects.filter(pk=customer.pk).update(
            last_updated=customer.created - dt.timedelta(1)
        )


def test_a_record_is_created_after_its_customer_and_active_since(dataset):
    """The constraints a walk by last activity starts from (IMPLIED_BOUNDS)."""
    record = CustomerRelationship.objects.select_related("appuser").first()
    before = record.appuser.created - dt.timedelta(seconds=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        CustomerRelationship.objects.filter(pk=record.pk).update(created=before)
    with pytest.raises(IntegrityError), transaction.atomic():
        AppUser.objects.filter(pk=record.pk).update(created=record.created + dt.timedelta(1))
    with pytest.raises(IntegrityError), transaction.atomic():
        CustomerRelationship.objects.filter(pk=record.pk).update(last_activity=before)
    customers = selectors.customer_list(
        filters={"created_from": (record.appuser.created, False)},
        ordering=customer_ordering("relationship__last_activity"),
    )
    assert "last_activity" in str(first_page(customers).start)


# -- what a sort reads through ---------------------------------------------------


def sample_of(rows: int, **columns: np.ndarray) -> ListSample:
    size = len(next(iter(columns.values())))
    return ListSample(rows, {"id": np.arange(size, dtype=float), **columns})


def condition(sampled: np.ndarray, column: str, **kwargs) -> selectors.Condition:
    return selectors.Condition(
        Q(**{f"{column}__isnull": False}), lambda sample: sampled, True, column, **kwargs
    )


def estimate(sample: ListSample, conditions: list[selectors.Condition]):
    return plans.estimate(sample, conditions, {id(c): c.test(sample) for c in conditions})


def test_a_sort_intersects_two_filters_indexes_where_that_spares_rows():
    rng = np.random.default_rng(1)
    a, b = rng.random(20_000) < 0.03, rng.random(20_000) < 0.03
    sample = sample_of(MILLION, points=rng.random(20_000), created=np.arange(20_000.0))
    expected, access = estimate(sample, [condition(a, "points"), condition(b, "city")])
    # 3% and 3%, 0.09% together: both indexes, and only the rows both find.
    assert len(access) == 2
    assert expected.reads == sample.scaled(a & b)
    assert expected.entries == sample.scaled(a) + sample.scaled(b)


def test_a_sort_reads_through_one_index_where_another_spares_little():
    rng = np.random.default_rng(2)
    a = rng.random(20_000) < 0.01
    everyone_but_a_few = rng.random(20_000) < 0.95
    sample = sample_of(MILLION, points=rng.random(20_000))
    _, access = estimate(sample, [condition(everyone_but_a_few, "city"), condition(a, "points")])
    assert [c.column for c in access] == ["points"]


def test_a_customer_number_is_read_by_its_index_whatever_the_sample_says():
    sample = sample_of(MILLION, points=np.zeros(1000), customer_id=np.arange(1000).astype(str))
    nobody = np.zeros(1000, dtype=bool)
    expected, access = estimate(
        sample, [condition(nobody, "customer_id", at_most=1), condition(~nobody, "points")]
    )
    assert [c.column for c in access] == ["customer_id"]
    assert expected.matches <= 1


def test_a_walk_ordered_by_city_stays_within_the_one_country_filtered(dataset):
    customers = selectors.customer_list(
        filters={"country": "austria"}, ordering=customer_ordering("address__city")
    )
    assert "country" in str(first_page(customers).start)
    plan = explain(customers)
    assert "customer_list_country" in plan, plan


def test_a_sort_reads_a_range_between_its_two_bounds():
    rng = np.random.default_rng(3)
    created = rng.random(20_000)
    sample = sample_of(MILLION, created=created)
    after, before = condition(created >= 0.5, "created"), condition(created < 0.52, "created")
    expected, access = estimate(sample, [after, before])
    # Half and 52% of the customers, 2% together: one scan between the bounds.
    assert {id(c) for c in access} == {id(after), id(before)}
    assert expected.reads == sample.scaled((created >= 0.5) & (created < 0.52))


@pytest.mark.parametrize(("low", "high"), RANGES)
def test_no_range_has_a_bound_in_the_index_and_the_other_tested_per_row(
    dataset, monkeypatch, low, high
):
    """Both bounds of every range filter are read through its index together,
    or both tested on each row: a narrow range near one end, at 3M customers."""
    real = samples.get(connection.alias)
    monkeypatch.setattr(samples, "get", lambda alias: ListSample(3_000_000, real.columns))
    column = CustomerFilter.base_filters[low].field_name
    values = sorted(
        {v for v in CustomerRow.objects.values_list(column, flat=True) if v is not None}
    )
    # The upper bound alone is narrow enough for the index, the lower one is
    # not: where each goes is the question.
    middle = [values[len(values) * 10 // 100], values[len(values) * 15 // 100]]
    given = {
        name: str(v.date() if isinstance(v, dt.datetime) else v)
        for name, v in zip((low, high), middle, strict=True)
    }
    form = CustomerFilter(data=given, queryset=CustomerRow.objects.none()).form
    assert form.is_valid(), form.errors
    query = selectors.customer_list(
        filters={name: form.cleaned_data[name] for name in given}, ordering=customer_ordering("id")
    )
    plan = plans.plan(query, PagePosition(offset=0, limit=51), "exact", forced="sort")
    read, tested = columns_of(plan.access), columns_of(plan.tests)
    assert not (read & tested), (given, plan.access, plan.tests)
    assert read, f"a narrow {column} range is read through its index: {given}"
