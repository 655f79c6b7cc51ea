"""Orderings and the keyset seek."""

from __future__ import annotations

import re

import pytest
from django.db import connection

from core.customers import pagination, selectors
from core.customers.ordering import customer_ordering, rows_after

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("spec", "index"),
    [
        ("-relationship__points", "relationship_points_user"),
        ("relationship__last_activity", "relationship_activity_user"),
        ("address__city", "address_city_id"),
        ("last_name", "appuser_last_name_id"),
        ("birthday", "appuser_birthday_id"),
        ("-created", "appuser_created_id"),
    ],
)
def test_keyset_seek_is_an_index_condition(dataset, spec, index):
    """The cursor's row comparison must be on the very columns of the sort's index."""
    parsed = customer_ordering(spec)
    queryset = selectors.customer_list(ordering=parsed)
    page = pagination.keyset_page(queryset, parsed, size=10)
    boundary = page.key_values(page.rows[-1], parsed)
    seek = (
        pagination.page_query(queryset, parsed)
        .filter(rows_after(parsed, boundary, reverse=False))
        .order_by(*parsed.order_by())[:10]
    )
    sql, params = seek.query.sql_with_params()
    with connection.cursor() as cursor:
        # A 300-row table is cheaper to sort than to walk by index; forbid the
        # sort to see that the index can serve the page.
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert re.search(
        rf"Index (Only )?Scan (Backward )?using {index}\b.*\n\s+Index Cond: \(+ROW", plan
    ), plan
