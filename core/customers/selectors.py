"""Reads of customers: the one place that builds the customer list query.

The API, the admin, the export and the benchmark all start from
:func:`customer_list`, so a filter, an ordering or a search means the same
SQL everywhere; :mod:`core.customers.pagination` pages it and counts it.

Joins: the address is an inner join (every customer has one). The loyalty
record is a reverse one-to-one, which Django left-joins; ordered by one of its
columns, the list **inner**-joins it instead, because only then can
PostgreSQL walk the ``relationship_points_user`` index to serve
``ordering=-relationship__points``: through the LEFT OUTER JOIN the same page
costs a sort of the whole table (2.5 s at 3M rows in the original). A
customer without a record (``generate_data``, the API and the admin always
create both) has no place in such an order and is left out of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import QuerySet

from core.models import AppUser

from .columns import customer_rows
from .filters import CustomerFilter
from .ordering import RELATIONSHIP, Ordering, customer_ordering
from .pagination import keyset_page
from .search import customer_search


def customer_list(
    *,
    filters: Mapping[str, Any] | None = None,
    ordering: Ordering | None = None,
    search: str | None = None,
) -> QuerySet:
    """Customers matching ``filters`` (already validated by :class:`CustomerFilter`)
    that have a place in ``ordering``.

    Not yet ordered or paged: see :mod:`core.customers.pagination`.
    """
    queryset = AppUser.objects.all()
    if ordering is not None and any(key.table == RELATIONSHIP for key in ordering.keys):
        # Makes Django inner-join the loyalty record (see the module docstring).
        queryset = queryset.filter(relationship__isnull=False)
    for name, value in (filters or {}).items():
        # What FilterSet.filter_queryset does, without instantiating a
        # FilterSet (it deep-copies every filter: a millisecond per request).
        queryset = CustomerFilter.base_filters[name].filter(queryset, value)
    if search:
        queryset = customer_search(queryset, search)
    return queryset


def customer_detail(pk: int) -> dict[str, Any] | None:
    """One customer, exactly as the list shows them (the same query, one row)."""
    ordering = customer_ordering(None)
    page = keyset_page(customer_list(filters={"id": pk}), ordering, size=1)
    return customer_rows(page.rows)[0] if page.rows else None


def customer_for_update(pk: int) -> AppUser | None:
    """The customer with their address and record loaded, as the write services take them.

    Not locked: the services write in their own transaction, and a write
    request reads the primary (see crm.replicas).
    """
    return AppUser.objects.select_related("address", "relationship").filter(pk=pk).first()
