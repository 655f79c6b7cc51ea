"""The list's plans: walk or sort, joins or membership sets; every plan returns the same pages."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from django.db import connection
from hypothesis import given
from hypothesis import strategies as st

from core.customers import pagination, selectors
from core.customers.ordering import ADDRESS, CUSTOMER, RELATIONSHIP, customer_ordering
from core.customers.selectors import TESTABLE, Group, list_plan, sort_cost, walk_cost
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

CHOSEN = selectors.list_plan


def forced(kind: str):
    """``list_plan`` made to sort (read through the first table's filters) or to
    walk, testing every table it can by membership: the shapes the cost model
    picks at millions of rows, forced on a small table. ``sort-first`` finds
    the matches before it reads their sort keys."""

    def plan(filters, ordering, searched=None):
        base = CHOSEN(filters, ordering, searched)
        groups, _ = selectors.table_estimates(filters, searched)
        if kind.startswith("sort"):
            driver = next((g for g in groups if g.buildable), None)
            scanned = driver.table if driver else CUSTOMER
            testable = TESTABLE[scanned]
            probes = {
                g.table for g in groups if g is not driver and g.buildable and g.table in testable
            }
            return dataclasses.replace(
                base,
                sort=True,
                probes=frozenset(probes),
                scanned=scanned,
                filter_first=kind == "sort-first",
            )
        scanned = ordering.keys[0].table
        probes = {g.table for g in groups if g.buildable and g.table in TESTABLE[scanned]}
        return dataclasses.replace(base, sort=False, probes=frozenset(probes), scanned=scanned)

    return plan


@pytest.fixture(params=["chosen", "sort", "sort-first", "walk"])
def plan_kind(request, monkeypatch):
    if request.param != "chosen":
        monkeypatch.setattr(selectors, "list_plan", forced(request.param))
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


def explain(queryset, ordering) -> str:
    page = pagination.page_query(queryset, ordering).order_by(*ordering.order_by())[:51]
    ids = queryset.order_by(*ordering.order_by()).values("pk")[:51]
    sql, params = (ids if queryset.plan else page).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_a_walk_tests_other_tables_by_a_hashed_membership_set(dataset, monkeypatch):
    monkeypatch.setattr(selectors, "list_plan", forced("walk"))
    ordering = customer_ordering("created")
    queryset = selectors.customer_list(
        filters={"points_min": 100, "city": "vienna"}, ordering=ordering
    )
    assert queryset.plan.probes == {RELATIONSHIP, ADDRESS}
    plan = explain(queryset, ordering)
    assert plan.count("hashed SubPlan") == 2, plan
    assert "appuser_created_id" in plan, plan


def test_a_sort_reads_the_matches_through_the_filters_index(dataset, monkeypatch):
    monkeypatch.setattr(selectors, "list_plan", forced("sort"))
    ordering = customer_ordering("created")
    queryset = selectors.customer_list(filters={"points_min": 100}, ordering=ordering)
    assert queryset.plan.sort
    sql = str(queryset.order_by(*ordering.order_by(unindexed=True)).query)
    assert "+ interval '0 seconds'" in sql
    plan = explain(queryset.order_by(), ordering)
    assert "relationship_points_user" in plan, plan


# -- the cost model, at the sizes it is made for ----------------------------------

MILLION = 3_000_000


def group(table: str, share: float, index_only: bool = True) -> Group:
    return Group(table, round(share * MILLION), MILLION, index_only, buildable=True)


def choose(groups: list[Group], spec: str):
    ordering = customer_ordering(spec)
    estimate = MILLION
    for g in groups:
        estimate *= g.share
    walk = walk_cost(groups, ordering, MILLION, round(estimate))
    sorts = [sort_cost(groups, driver, round(estimate), ordering) for driver in groups]
    return min([walk, *sorts], key=lambda candidate: candidate.cost)


def test_few_matches_are_sorted_many_are_walked():
    # 1,200 customers with 68,462 points or more, ordered by birthday: the
    # LIMIT trap walks 148,558 birthdays for them; a sort reads 1,200.
    chosen = choose([group(RELATIONSHIP, 0.0004)], "birthday")
    assert (chosen.sort, chosen.scanned) == (True, RELATIONSHIP)
    # 40% of customers: the first 51 birthdays hold the page.
    assert choose([group(RELATIONSHIP, 0.4)], "birthday").sort is False


def test_a_selective_filter_of_another_table_becomes_a_membership_set():
    # 0.2% of customers (6,000): a walk of 25,000 created dates, each tested
    # against a set of 6,000 ids, beats 6,000 sorted rows and 25,000 joins.
    chosen = choose([group(RELATIONSHIP, 0.002)], "created")
    assert not chosen.sort
    assert chosen.probes == {RELATIONSHIP}
    # 40% of customers: a set of 1.2M ids is not worth building for a walk of 130.
    assert choose([group(RELATIONSHIP, 0.4)], "created").probes == frozenset()


def test_a_walk_tests_its_own_tables_filters_on_the_rows_it_reads():
    # ?last_name=smith, 1% of customers, from the trigram index (not index
    # only): walking the ids reads about 5,100 rows for a page; a set of
    # every Smith would read 10,000 rows first.
    chosen = choose([group(CUSTOMER, 0.01, index_only=False)], "id")
    assert (chosen.sort, chosen.probes, chosen.scanned) == (False, frozenset(), CUSTOMER)
    # Another table's filter, as selective, is still a set: a join per walked
    # customer costs more, and a misjudged walk costs it many times over.
    assert choose([group(RELATIONSHIP, 0.01)], "created").probes == {RELATIONSHIP}


def test_a_set_too_large_for_work_mem_is_never_built(dataset, monkeypatch):
    # PostgreSQL would run a subplan that does not fit in work_mem once per row.
    monkeypatch.setattr(selectors, "MAX_MEMBERS", 10)
    (everyone,), _ = selectors.table_estimates({"points_min": 0})
    assert everyone.matches > 10
    assert not everyone.buildable
    walk = walk_cost([everyone], customer_ordering("created"), 150, everyone.matches)
    assert walk.probes == frozenset()


def test_a_range_on_one_table_is_counted_not_guessed(dataset):
    plan = list_plan({"points_min": 100}, customer_ordering("created"))
    assert plan.exact
    assert plan.estimate == sum(
        1 for row in dataset if row["points"] is not None and row["points"] >= 100
    )


def test_a_walk_that_passes_a_correlated_ranges_far_end_first_is_longer(dataset):
    """Customers are written in id order, so their sign-up dates follow the ids:
    the oldest customers come last in a walk by -id, first in a walk by id."""
    assert selectors.column_correlation("created") > selectors.FOLLOWS_ROWS
    oldest = sorted(row["created"] for row in dataset)[len(dataset) // 4]
    bound = (oldest, False)
    share = sum(1 for row in dataset if row["created"] <= oldest) / len(dataset)
    skipped = selectors.walk_skip({"created_to": bound}, customer_ordering("-id"))
    assert skipped == pytest.approx(1 - share, abs=0.35)
    assert selectors.walk_skip({"created_to": bound}, customer_ordering("id")) == 0
    assert selectors.walk_skip({"created_from": bound}, customer_ordering("-id")) == 0
    # Uncorrelated: no stretch to pass.
    assert selectors.walk_skip({"created_to": bound}, customer_ordering("last_name")) == 0
    # Walking the range's own column starts within the range.
    assert selectors.walk_skip({"created_to": bound}, customer_ordering("-created")) == 0


def test_a_substring_the_statistics_cannot_see_is_not_taken_for_a_rare_one(dataset):
    """A phone substring without a trigram that no histogram value holds is
    estimated at UNSEEN_SHARE of the customers, not at a handful: taken for
    rare, it made the list sort a million customers to find 17,019."""
    (group,), customers = selectors.table_estimates({"phone_number": "9q"})
    assert group.matches >= selectors.UNSEEN_SHARE * customers - 1
    assert not group.exact


def test_a_walk_by_last_update_starts_where_the_sign_ups_do(dataset, monkeypatch):
    """Nobody is updated before being created (a constraint of the table), so
    a walk by last update with a lower bound on sign-up starts at that bound:
    the customers last updated before it cannot match."""
    from django.db import IntegrityError, transaction

    from core.models import AppUser

    monkeypatch.setattr(selectors, "list_plan", forced("walk"))
    since = sorted(row["created"] for row in dataset)[len(dataset) // 2]
    ordering = customer_ordering("last_updated")
    queryset = selectors.customer_list(filters={"created_from": (since, False)}, ordering=ordering)
    assert '"core_appuser"."last_updated" >=' in str(queryset.query)
    assert selectors.walk_skip({"created_from": (since, False)}, ordering) == 0
    customer = AppUser.objects.first()
    with pytest.raises(IntegrityError), transaction.atomic():
        AppUser.objects.filter(pk=customer.pk).update(
            last_updated=customer.created - dt.timedelta(1)
        )


def test_a_record_is_created_after_its_customer_and_active_since(dataset):
    """The constraints a walk by last activity starts from (IMPLIED_STARTS)."""
    from django.db import IntegrityError, transaction

    from core.models import AppUser, CustomerRelationship

    record = CustomerRelationship.objects.select_related("appuser").first()
    before = record.appuser.created - dt.timedelta(seconds=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        CustomerRelationship.objects.filter(pk=record.pk).update(created=before)
    with pytest.raises(IntegrityError), transaction.atomic():
        AppUser.objects.filter(pk=record.pk).update(created=record.created + dt.timedelta(1))
    with pytest.raises(IntegrityError), transaction.atomic():
        CustomerRelationship.objects.filter(pk=record.pk).update(last_activity=before)
    ordering = customer_ordering("relationship__last_activity")
    since = (record.appuser.created, False)
    assert selectors.implied_starts({"created_from": since}, ordering) == {
        "relationship__last_activity__gte": record.appuser.created
    }
    assert selectors.walk_skip({"created_from": since}, ordering) == 0
