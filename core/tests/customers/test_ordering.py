"""Orderings and the keyset seek."""

from __future__ import annotations

import re

import pytest
from django.db import connection

from core.customers import page_statement, pagination, plans, selectors
from core.customers.ordering import INDEXED_ORDERS, SORT_FIELDS, customer_ordering

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("spec", "index"),
    [
        ("-relationship__points", "customer_list_points"),
        ("relationship__last_activity", "customer_list_last_activity"),
        ("address__city", "customer_list_city"),
        ("last_name", "customer_list_last_name"),
        ("birthday", "customer_list_birthday"),
        ("-created", "customer_list_created"),
    ],
)
def test_keyset_seek_is_an_index_condition(dataset, spec, index):
    """The cursor's row comparison must be on the very columns of the sort's index."""
    parsed = customer_ordering(spec)
    customers = selectors.customer_list(ordering=parsed)
    page = pagination.keyset_page(customers, size=10)
    boundary = page.key_values(page.rows[-1], parsed)
    position = plans.PagePosition(0, 10, tuple(boundary))
    sql, params = page_statement.page_statement(plans.plan(customers, position, "none"))
    with connection.cursor() as cursor:
        # A 300-row table is cheaper to sort than to walk by index; forbid the
        # sort to see that the index can serve the page.
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert re.search(
        # (A record's field also bounds its index to the customers with one:
        # "points IS NOT NULL AND ROW(points, id) < …".)
        rf"Index (Only )?Scan (Backward )?using {index}\b.*\n\s+Index Cond: \(.*\bROW\(",
        plan,
    ), plan


def test_every_indexed_order_is_an_index_of_the_read_table(db):
    """The orders the list treats as indexed (INDEXED_ORDERS) are the read
    table's b-trees, column for column."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT array_agg(a.attname ORDER BY k.n) FROM pg_index i "
            "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = 'core_customer_list'::regclass GROUP BY i.indexrelid"
        )
        indexes = {tuple(row[0]) for row in cursor.fetchall()}
    for order in INDEXED_ORDERS:
        columns = tuple(SORT_FIELDS[name].expression.name for name in order)
        assert columns in indexes, order
