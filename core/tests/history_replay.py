"""Each customer's history, replayed from nothing, against their row now.

Written from the README's description of the history (events per row
changed, only the changed fields, an address's events by address), not from
the triggers' SQL, so that a mistake in one is not repeated in the other.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import connection

from core.models import HistoryEvent

Entity, Kind = HistoryEvent.Entity, HistoryEvent.Kind

#: The read table's column of each field the history names (README).
COLUMN = {
    "first_name": "first_name",
    "last_name": "last_name",
    "gender": "gender",
    "customer_id": "customer_id",
    "email": "email",
    "phone_number": "phone_number",
    "birthday": "birthday",
    "created": "created",
    "last_updated": "last_updated",
    "address.id": "address_id",
    "address.street": "street",
    "address.street_number": "street_number",
    "address.city_code": "city_code",
    "address.city": "city",
    "address.country": "country",
    "relationship.points": "points",
    "relationship.created": "relationship_created",
    "relationship.last_activity": "last_activity",
}


def _apply(row: dict[str, Any] | None, kind: str, changes: dict) -> dict[str, Any] | None:
    if kind == Kind.DELETE:
        return None
    row = dict(row or {}) if kind == Kind.UPDATE else {}
    for name, (_, new) in changes.items():
        row[name] = new
    return row


#: The field of each read-table column (the inverse of COLUMN).
FIELD = {column: name for name, column in COLUMN.items()}


def replayed(
    customer: int,
    *,
    start: dict[str, Any] | None = None,
    after: int = 0,
    addresses: dict[int, dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """The customer's row as their events say it is (None: deleted or erased):
    from nothing, or from their row ``start`` (read-table columns, as
    :func:`listed` gives it) with the events after the event ``after``; an
    address then starts as ``addresses`` (by id) has it, if it is there."""
    fields = {FIELD[column]: value for column, value in (start or {}).items()}
    own: dict[str, Any] | None = {k: v for k, v in fields.items() if "." not in k} or None
    if own is not None:
        own["address.id"] = fields.get("address.id")
    record = {k: v for k, v in fields.items() if k.startswith("relationship.")} or None
    address_start = {k: v for k, v in fields.items() if k.startswith("address.")}
    address_start.pop("address.id", None)
    events = HistoryEvent.objects.filter(customer_id=customer, id__gt=after).order_by("id")
    for entity, kind, changes in events.values_list("entity", "kind", "changes"):
        if kind == Kind.ERASED:
            return None
        if entity == Entity.CUSTOMER:
            own = _apply(own, kind, changes)
        elif entity == Entity.RELATIONSHIP:
            record = _apply(record, kind, changes)
    if own is None:
        return None
    address_id = own.get("address.id")
    known = dict(addresses or {})
    if start:
        known[fields.get("address.id")] = address_start
    address: dict[str, Any] | None = known.get(address_id)
    events = HistoryEvent.objects.filter(entity=Entity.ADDRESS, row_id=address_id)
    if address is not None:
        events = events.filter(id__gt=after)
    for kind, changes in events.order_by("id").values_list("kind", "changes"):
        address = _apply(address, kind, changes)
    fields = {**own, **(address or {}), **(record or {})}
    return {COLUMN[name]: value for name, value in fields.items() if value is not None}


def listed(customer: int) -> dict[str, Any] | None:
    """The customer's row of the read table, each value as JSON writes it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_jsonb(l) FROM core_customer_list l WHERE id = %s", [customer])
        found = cursor.fetchone()
    if found is None:
        return None
    # Django's cursor hands jsonb over as its text (JSONField decodes it).
    row = json.loads(found[0]) if isinstance(found[0], str) else found[0]
    columns = set(COLUMN.values())
    return {name: value for name, value in row.items() if name in columns and value is not None}


def replay_drift(
    customers: list[int] | None = None,
    *,
    starts: dict[int, dict[str, Any] | None] | None = None,
    after: int = 0,
    addresses: dict[int, dict[str, Any]] | None = None,
) -> list[tuple[int, Any, Any]]:
    """Customers whose replayed history is not their row: (id, replayed, listed).
    From nothing, or from the rows ``starts`` with the events after ``after``;
    an address that no row of ``starts`` has (nobody lived there, and a
    customer moves in) starts as ``addresses`` has it (:func:`addresses_now`)."""
    if customers is None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM core_customer_list UNION "
                "SELECT DISTINCT customer_id FROM core_history WHERE customer_id IS NOT NULL"
            )
            customers = [pk for (pk,) in cursor.fetchall()]
    addresses = {
        **(addresses or {}),
        **{
            row["address_id"]: {
                FIELD[column]: value
                for column, value in row.items()
                if FIELD[column].startswith("address.") and column != "address_id"
            }
            for row in (starts or {}).values()
            if row is not None
        },
    }
    drift = []
    for customer in sorted(customers):
        start = (starts or {}).get(customer)
        events = replayed(customer, start=start, after=after, addresses=addresses)
        now = listed(customer)
        if events != now:
            drift.append((customer, events, now))
    return drift


def addresses_now() -> dict[int, dict[str, Any]]:
    """Every address as it is now, by id, in the history's field names."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, street, street_number, city_code, city, country FROM core_address"
        )
        names = [column.name for column in cursor.description][1:]
        return {
            pk: {f"address.{name}": value for name, value in zip(names, values, strict=True)}
            for pk, *values in cursor.fetchall()
        }


def newest_event() -> int:
    """The id of the newest event (0: none): where a replay from rows now starts."""
    return HistoryEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
