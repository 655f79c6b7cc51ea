"""Reads of the history: a customer's events, and everything held about a person."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model

from core.customers.selectors import customer_detail
from core.history_triggers import recorded
from core.models import CustomerRow, HistoryEvent
from core.read_table import read_table

TABLE = read_table(CustomerRow)

#: Every field the history records, by its name in the API (``address.city``).
FIELDS: tuple[str, ...] = tuple(name for join in TABLE.joins for name, _ in recorded(TABLE, join))


@dataclass(frozen=True)
class EventFilters:
    """Which of a customer's events: since and until an instant (inclusive),
    by one user, or changing one field."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    actor: int | None = None
    field: str | None = None


def customer_events(
    customer_id: int,
    *,
    filters: EventFilters = EventFilters(),
    before: int | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The events concerning a customer, newest first, each as the API shows
    it (with its ``id``, the position a cursor holds): those before the event
    ``before``, at most ``limit``.

    Read through ``history_customer`` (customer, id): newest first is that
    index backwards, and the filters are tested on the customer's rows only.
    """
    events = HistoryEvent.objects.filter(customer_id=customer_id)
    if before is not None:
        events = events.filter(id__lt=before)
    if filters.since is not None:
        events = events.filter(at__gte=filters.since)
    if filters.until is not None:
        events = events.filter(at__lte=filters.until)
    if filters.actor is not None:
        events = events.filter(actor_id=filters.actor)
    if filters.field is not None:
        events = events.filter(changes__has_key=filters.field)
    events = events.order_by("-id")
    if limit is not None:
        events = events[:limit]
    return presented(list(events.values()))


def presented(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events as the API shows them: the actor by name, kinds and sources by word."""
    actors = {e["actor_id"] for e in events if e["actor_id"] is not None}
    names = dict(
        get_user_model().objects.filter(pk__in=actors).values_list("pk", "username")
        if actors
        else []
    )
    kinds = dict(HistoryEvent.Kind.choices)
    sources = {value: label.lower() for value, label in HistoryEvent.Source.choices}
    return [
        {
            "id": event["id"],
            "at": event["at"].isoformat(),
            "actor": names.get(event["actor_id"]),
            "source": sources[event["source"]],
            "request_id": event["request_id"],
            "kind": kinds[event["kind"]],
            "changes": event["changes"],
        }
        for event in events
    ]


def personal_data(customer_id: int) -> dict[str, Any] | None:
    """Everything held about a person, for access and portability (GDPR
    articles 15 and 20): the customer as the API shows them, with their
    address and loyalty record, and their whole history. None if there is
    no such customer."""
    customer = customer_detail(customer_id)
    if customer is None:
        return None
    return {"customer": customer, "history": customer_events(customer_id)}


def actor_id(username: str) -> int | None:
    """The id of the user named ``username`` (None: there is none)."""
    return get_user_model().objects.filter(username=username).values_list("pk", flat=True).first()


def has_history(customer_id: int) -> bool:
    """Whether any event concerns the customer (a deleted customer's history stays)."""
    return HistoryEvent.objects.filter(customer_id=customer_id).exists()
