"""Writes of the history: erasing a person, pruning old events.

The history itself is written by PostgreSQL (:mod:`core.history_triggers`);
these are the only two ways events leave it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Exists, OuterRef
from django.utils import timezone

from core.customers import services
from core.customers.search import KNOWN_FIELDS
from core.models import Address, AppUser, CustomerRelationship, CustomerRow, HistoryEvent

from .context import Writer

Entity, Kind = HistoryEvent.Entity, HistoryEvent.Kind


@services.write_transaction
def customer_erase(pk: int, *, writer: Writer) -> dict[str, int]:
    """Erase customer ``pk`` (GDPR article 17), in one transaction.

    Gone: the customer and their loyalty record; their address, unless
    someone else lives there; every event of the history that concerns them
    (the deletions this erasure itself causes included), and the events of
    their address if it went; the admin's log entries about them (their
    ``object_repr`` holds the name); every known value (SearchTerm) that
    only they held. One event stays: that ``writer`` erased the customer
    with this id, when, with which request id. Others' events are untouched,
    those of a shared address's other residents included.

    An address that stays (someone else lives there, or may move in) keeps
    its history: its events that only the erased customer's history held
    (written while they were its only resident) stay as the address's,
    concerning nobody, as an address's events do while no one lives there.
    Without them, a resident who moved in later could not replay the
    address they live at from the history.
    """
    customer = services.locked_customer(pk)
    row = CustomerRow.objects.filter(pk=pk).values(*KNOWN_FIELDS).first() or {}
    address_id = customer.address_id
    address_gone = services.delete_locked(customer)
    _keep_address_histories(pk)
    removed, _ = HistoryEvent.objects.filter(customer_id=pk).delete()
    if address_gone:
        # Its events written while no one lived there (the address is
        # created before the customer pointing at it) concern nobody.
        gone, _ = HistoryEvent.objects.filter(
            entity=Entity.ADDRESS, row_id=address_id, customer_id__isnull=True
        ).delete()
        removed += gone
    _forget_log_entries(pk, address_id if address_gone else None)
    _forget_known_values(row)
    HistoryEvent.objects.create(
        at=timezone.now(),
        entity=Entity.CUSTOMER,
        row_id=pk,
        customer_id=pk,
        kind=Kind.ERASED,
        actor_id=writer.actor,
        request_id=writer.request_id,
        source=writer.source,
    )
    return {"events_removed": removed}


def _keep_address_histories(customer: int) -> None:
    """The events of addresses still there that only ``customer``'s history
    holds become the address's, concerning nobody (an event written for
    several residents at once has a twin for each, which stays theirs)."""
    twin = HistoryEvent.objects.filter(
        entity=Entity.ADDRESS,
        row_id=OuterRef("row_id"),
        at=OuterRef("at"),
        kind=OuterRef("kind"),
        customer_id__isnull=False,
    ).exclude(customer_id=customer)
    HistoryEvent.objects.filter(
        customer_id=customer, entity=Entity.ADDRESS, row_id__in=Address.objects.values("pk")
    ).exclude(Exists(twin)).update(customer_id=None)


def _forget_log_entries(customer: int, address: int | None) -> None:
    types = ContentType.objects.get_for_models(AppUser, CustomerRelationship, Address)
    LogEntry.objects.filter(
        content_type__in=[types[AppUser], types[CustomerRelationship]], object_id=str(customer)
    ).delete()
    if address is not None:
        LogEntry.objects.filter(content_type=types[Address], object_id=str(address)).delete()


def _forget_known_values(values: dict[str, str]) -> None:
    """Drop each of the person's known values that no one else holds (the
    read table's b-tree on each known column answers "anyone else?")."""
    with connection.cursor() as cursor:
        for field, value in values.items():
            cursor.execute(
                f"DELETE FROM core_searchterm WHERE field = %s AND value = %s "
                f"AND NOT EXISTS (SELECT FROM core_customer_list WHERE {field} = %s)",
                [field, value, value],
            )


#: Events deleted per statement by history_prune: a batch of this many takes
#: well under a second, so that pruning never holds back other writers long.
PRUNE_BATCH = 10_000


def history_prune(
    before: dt.datetime,
    *,
    batch: int = PRUNE_BATCH,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete the events before ``before``, ``batch`` at a time, each batch its
    own transaction (the oldest first): stopped anywhere, it resumes where it
    left off. Erasure events stay: they are the record that a person was erased.
    Returns how many went."""
    removed, last = 0, 0
    while True:
        with connection.cursor() as cursor:
            # From the last batch's end on, in the primary key's order (about
            # the events' order in time): never over the entries of rows
            # deleted before, which stay in the index until a vacuum.
            cursor.execute(
                "WITH gone AS (DELETE FROM core_history WHERE id IN ("
                "SELECT id FROM core_history WHERE id > %s AND at < %s AND kind <> %s "
                "ORDER BY id LIMIT %s) RETURNING id) SELECT count(*), max(id) FROM gone",
                [last, before, Kind.ERASED, batch],
            )
            count, highest = cursor.fetchone()
        removed += count
        last = highest or last
        if progress is not None:
            progress(removed)
        if count < batch:
            return removed
