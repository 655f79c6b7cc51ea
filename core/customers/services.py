"""Writes of customers: the customer, their address and loyalty record, together.

Each service is one transaction: the three tables (and the search terms of
:mod:`core.customers.search`) change together or not at all. Concurrent
writes of one customer are serialized, not interleaved:

* a change or a deletion first locks the customer's row (``SELECT … FOR
  UPDATE``) and reads it afresh, so a second writer waits for the first and
  then sees its result: a customer deleted meanwhile is "not found", never
  written back (an UPDATE of a vanished row would make Django INSERT it);
* only the fields a request changes are written (``update_fields``), so two
  requests that change different fields both keep their change;
* locks are taken in one order (customer, address, loyalty record), and a
  transaction that PostgreSQL still aborts to break a deadlock with some
  other writer (or could not serialize) runs again, up to
  :data:`WRITE_ATTEMPTS` times, before :class:`CustomerWriteConflict`.

An address may be shared by several customers (data written around the
services may point several at one, and older data does): changing it through
one customer copies it first, so that the others keep theirs. The admin
writes through these services too (core.admin.CustomerFormBase).
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from django.db import IntegrityError, OperationalError, models, transaction

from core.models import Address, AppUser, CustomerRelationship

from .selectors import customer_detail
from .versions import customer_version

#: How often a write runs when PostgreSQL aborts it to break a deadlock or a
#: serialization failure (each time after a short random pause).
WRITE_ATTEMPTS = 3

T = TypeVar("T")


class CustomerNotFound(Exception):
    """No customer with this id (any more)."""


class CustomerConflict(Exception):
    """A write would break a uniqueness rule (a customer_id taken meanwhile):
    ``field`` names the field whose value is taken."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field

    @classmethod
    def of(cls, exc: IntegrityError) -> CustomerConflict:
        """The conflict PostgreSQL reported: the field of the customer's unique
        constraint it names (each constraint is on one field)."""
        name = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
        fields = {
            constraint.name: constraint.fields[0]
            for constraint in AppUser._meta.constraints
            if isinstance(constraint, models.UniqueConstraint)
        }
        if name not in fields:
            raise exc
        return cls(fields[name])


class CustomerChanged(Exception):
    """The customer is not the version the client expected (``If-Match``)."""

    def __init__(self, current: str) -> None:
        super().__init__(current)
        self.current = current


class CustomerWriteConflict(Exception):
    """The write kept colliding with concurrent writes (deadlocks); nothing was written."""


#: SQLSTATEs of a transaction PostgreSQL rolled back because of concurrent
#: ones: a serialization failure, a deadlock victim. Not the rest of class 40:
#: 40003 (statement completion unknown) may have committed, and running it
#: again would be the blind retry a failover must not make.
COLLISIONS = frozenset({"40001", "40P01"})


def is_collision(exc: BaseException) -> bool:
    """Whether PostgreSQL rolled the transaction back because of concurrent
    ones (:data:`COLLISIONS`): nothing was written, and running it again is
    what PostgreSQL's documentation advises."""
    cause = exc.__cause__ if isinstance(exc, OperationalError) else exc
    return getattr(cause, "sqlstate", None) in COLLISIONS


def write_transaction(service: Callable[..., T]) -> Callable[..., T]:
    """Run ``service`` in a transaction; run it again when PostgreSQL aborted
    the transaction to break a deadlock or because it could not serialize it.

    Only such transaction-rollback errors are retried: the transaction did
    nothing, and running it again is what PostgreSQL's documentation advises.
    """

    @functools.wraps(service)
    def run(*args: Any, **kwargs: Any) -> T:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with transaction.atomic():
                    return service(*args, **kwargs)
            except OperationalError as exc:
                if not is_collision(exc):
                    raise
                if attempt == WRITE_ATTEMPTS:
                    raise CustomerWriteConflict(str(exc.__cause__)) from exc
                time.sleep(random.uniform(0.01, 0.05) * attempt)
        raise AssertionError("unreachable")

    return run


def _assign(instance: models.Model, values: Mapping[str, Any]) -> list[str]:
    """Set the values that differ from the instance's; return their names."""
    changed = [name for name, value in values.items() if getattr(instance, name) != value]
    for name in changed:
        setattr(instance, name, values[name])
    return changed


def locked_customer(pk: int) -> AppUser:
    """Customer ``pk``, locked for the caller's transaction, or :class:`CustomerNotFound`."""
    customer = AppUser.objects.select_for_update().filter(pk=pk).first()
    if customer is None:
        raise CustomerNotFound(pk)
    return customer


def _check_version(pk: int, if_match: Collection[str] | None) -> None:
    """Raise :class:`CustomerChanged` unless the customer (locked) is one of
    the versions ``if_match`` lists (``*``: any)."""
    if if_match is None or "*" in if_match:
        return
    current = customer_version(customer_detail(pk))
    if current not in if_match:
        raise CustomerChanged(current)


@write_transaction
def customer_create(*, address: dict, relationship: dict | None = None, **fields) -> AppUser:
    """A customer with their own address and loyalty record, all or nothing."""
    try:
        with transaction.atomic():
            customer = AppUser.objects.create(address=Address.objects.create(**address), **fields)
    except IntegrityError as exc:
        raise CustomerConflict.of(exc) from exc
    CustomerRelationship.objects.create(appuser=customer, **(relationship or {}))
    return customer


@write_transaction
def customer_update(
    pk: int,
    *,
    if_match: Collection[str] | None = None,
    address: dict | None = None,
    relationship: dict | None = None,
    **fields,
) -> AppUser:
    """Change customer ``pk`` and, in the same transaction, their address and record.

    ``last_updated`` moves whenever anything of the customer's changes, the
    address and the loyalty record included (and not when nothing does).
    """
    customer = locked_customer(pk)
    _check_version(pk, if_match)
    changed = _assign(customer, fields)
    touched = bool(changed)
    if address:
        current = Address.objects.select_for_update().get(pk=customer.address_id)
        address_changes = _assign(current, address)
        if address_changes:
            touched = True
            if current.users.exclude(pk=pk).exists():
                # Copy on write: the customers who share it keep it as it was.
                customer.address = Address.objects.create(
                    **{
                        f.attname: getattr(current, f.attname)
                        for f in Address._meta.concrete_fields
                        if not f.primary_key
                    }
                )
                changed.append("address")
            else:
                current.save(update_fields=address_changes)
    if relationship:
        record = CustomerRelationship.objects.select_for_update().filter(pk=pk).first()
        if record is None:
            CustomerRelationship.objects.create(appuser=customer, **relationship)
            touched = True
        elif record_changes := _assign(record, relationship):
            record.save(update_fields=record_changes)
            touched = True
    if touched:
        try:
            with transaction.atomic():
                customer.save(update_fields=[*changed, "last_updated"])
        except IntegrityError as exc:
            raise CustomerConflict.of(exc) from exc
    return customer


@write_transaction
def customer_delete(pk: int, *, if_match: Collection[str] | None = None) -> None:
    """Delete customer ``pk``, their loyalty record, and their address unless others live there.

    The address is locked before the check, so that two customers sharing it,
    deleted at once, cannot each leave it to the other.
    """
    customer = locked_customer(pk)
    _check_version(pk, if_match)
    delete_locked(customer)


def delete_locked(customer: AppUser) -> bool:
    """Delete a locked customer, their record, and their address unless others
    live there (locked before the check); whether the address went too.
    In the caller's transaction."""
    address = Address.objects.select_for_update().get(pk=customer.address_id)
    customer.delete()
    if address.users.exists():
        return False
    address.delete()
    return True
