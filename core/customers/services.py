"""Writes of customers: the customer, their address and loyalty record, together.

Each service is one transaction: the three tables (and the search terms of
:mod:`core.customers.search`) change together or not at all.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from core.models import Address, AppUser, CustomerRelationship

from .search import search_terms_add


class CustomerConflict(Exception):
    """A write would break a uniqueness rule (a customer_id taken meanwhile)."""


@transaction.atomic
def customer_create(*, address: dict, relationship: dict | None = None, **fields) -> AppUser:
    """A customer with their own address and loyalty record, all or nothing."""
    try:
        with transaction.atomic():
            customer = AppUser.objects.create(address=Address.objects.create(**address), **fields)
    except IntegrityError as exc:
        raise CustomerConflict("customer_id") from exc
    CustomerRelationship.objects.create(appuser=customer, **(relationship or {}))
    search_terms_add(customer)
    return customer


@transaction.atomic
def customer_update(
    customer: AppUser, *, address: dict | None = None, relationship: dict | None = None, **fields
) -> AppUser:
    """Change a customer and, in the same transaction, their address and record.

    ``last_updated`` moves whenever anything of the customer's changes, the
    address and the loyalty record included.
    """
    for name, value in fields.items():
        setattr(customer, name, value)
    if address:
        for name, value in address.items():
            setattr(customer.address, name, value)
        customer.address.save()
    if relationship:
        record, _ = CustomerRelationship.objects.get_or_create(appuser=customer)
        for name, value in relationship.items():
            setattr(record, name, value)
        record.save()
    try:
        with transaction.atomic():
            customer.save()
    except IntegrityError as exc:
        raise CustomerConflict("customer_id") from exc
    search_terms_add(customer)
    return customer


@transaction.atomic
def customer_delete(customer: AppUser) -> None:
    """Delete a customer, their loyalty record, and their address unless others live there."""
    address = customer.address
    customer.delete()
    if not address.users.exists():
        address.delete()
