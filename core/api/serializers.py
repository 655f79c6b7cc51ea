"""The API's shapes: customers in (writes) and out (their documented schema).

The list does not run these serializers per row (see
:func:`core.customers.columns.customer_rows` for why); they declare the
response for the OpenAPI schema, with the fields of the one row shape
(:data:`core.customers.columns.ROW`), and a test checks that the fast path
produces exactly this shape.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from django.db import models
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from core.customers import columns
from core.models import Address, AppUser, CustomerRelationship

EARLIEST_BIRTHDAY = dt.date(1900, 1, 1)
#: A client's clock may lag the server's: "now" a few seconds ago is still now.
LAST_ACTIVITY_TOLERANCE = dt.timedelta(seconds=60)


class CalendarDateField(serializers.DateField):
    """An ISO 8601 date, where a well-formed day the calendar lacks (``1990-02-29``)
    is "not a date", not DRF's "wrong format" (which sent clients looking for a
    format they had got right)."""

    default_error_messages = {
        **serializers.DateField.default_error_messages,
        "not_a_date": "Not a date: {value} is not a day of the calendar.",
    }
    well_formed = re.compile(r"\d{4}-\d{2}-\d{2}")

    def to_internal_value(self, value: Any) -> dt.date:
        if isinstance(value, str) and self.well_formed.fullmatch(value):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                self.fail("not_a_date", value=value)
        return super().to_internal_value(value)


class StrictFieldsMixin:
    """Refuses what it does not write: a misspelled field, one it does not
    know (``is_admin``) or a read-only one (``id``, ``created``) is a 400
    naming it, like an unknown query parameter, never silently dropped."""

    def to_internal_value(self, data: Any) -> Any:
        errors: dict[str, list[str]] = {}
        if isinstance(data, Mapping):
            for key in data:
                field = self.fields.get(key)
                if field is None:
                    errors[key] = [f"Unknown field. Allowed: {', '.join(self.writable_fields())}."]
                elif field.read_only:
                    errors[key] = ["Read-only; leave it out."]
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not errors or not isinstance(exc.detail, Mapping):
                raise
            raise serializers.ValidationError({**exc.detail, **errors}) from None
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def writable_fields(self) -> list[str]:
        return [name for name, field in self.fields.items() if not field.read_only]


class AddressSerializer(serializers.ModelSerializer):
    class Meta:
        model = Address
        fields = columns.field_names("address")


class AddressWriteSerializer(StrictFieldsMixin, AddressSerializer):
    """A customer's address, as clients write it."""


class RelationshipSerializer(serializers.ModelSerializer):
    class Meta:
        model = CustomerRelationship
        fields = columns.field_names("relationship")


class RelationshipWriteSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """A customer's loyalty record, as clients write it (its ``created`` is the server's)."""

    points = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)

    class Meta:
        model = CustomerRelationship
        fields = columns.field_names("relationship")
        read_only_fields = ["created"]
        extra_kwargs = {"last_activity": {"required": False}}

    def validate_last_activity(self, value: dt.datetime) -> dt.datetime:
        # The lower bound, the record's creation, is checked with the customer.
        if value > timezone.now() + LAST_ACTIVITY_TOLERANCE:
            raise serializers.ValidationError("Cannot be in the future.")
        return value


class CustomerSerializer(serializers.ModelSerializer):
    address = AddressSerializer()
    relationship = RelationshipSerializer(allow_null=True)

    class Meta:
        model = AppUser
        fields = [*columns.field_names(None), *columns.GROUPS]


class CustomerWriteSerializer(StrictFieldsMixin, CustomerSerializer):
    """A customer with their address and loyalty record, as clients write them
    (validation only: the write services write, in one transaction)."""

    address = AddressWriteSerializer()
    relationship = RelationshipWriteSerializer(required=False)
    serializer_field_mapping = {
        **CustomerSerializer.serializer_field_mapping,
        models.DateField: CalendarDateField,
    }

    class Meta(CustomerSerializer.Meta):
        read_only_fields = ["id", "created", "last_updated"]
        extra_kwargs = {
            "customer_id": {
                "validators": [
                    UniqueValidator(
                        queryset=AppUser.objects.all(),
                        message="A customer with this customer_id exists already.",
                    )
                ]
            }
        }

    def validate_birthday(self, value: dt.date | None) -> dt.date | None:
        if value is not None and value > dt.date.today():
            raise serializers.ValidationError("A birthday cannot be in the future.")
        if value is not None and value < EARLIEST_BIRTHDAY:
            raise serializers.ValidationError("A birthday cannot be before 1900-01-01.")
        return value

    def validate(self, attrs: dict) -> dict:
        record = attrs.get("relationship") or {}
        if "last_activity" in record:
            created = (
                self.instance.relationship.created
                if self.instance is not None and hasattr(self.instance, "relationship")
                else timezone.now()
            )
            if record["last_activity"] < created - LAST_ACTIVITY_TOLERANCE:
                raise serializers.ValidationError(
                    {
                        "relationship": {
                            "last_activity": [
                                f"Cannot be before the record was created ({created.isoformat()})."
                            ]
                        }
                    }
                )
        return attrs


class CustomerPageSchema(serializers.Serializer):
    """The schema of a page of the list, for the OpenAPI document only: the
    paginator builds the body itself (see core.customers.pagination)."""

    count = serializers.IntegerField(
        allow_null=True, help_text="Matching customers; null with count=none."
    )
    count_is_estimate = serializers.BooleanField(
        help_text="True when count is the planner's estimate rather than an exact count."
    )
    next = serializers.URLField(allow_null=True, help_text="The next page, or null.")
    previous = serializers.URLField(allow_null=True, help_text="The previous page, or null.")
    page = serializers.IntegerField(required=False, help_text="Page-number mode only.")
    page_size = serializers.IntegerField(required=False, help_text="Page-number mode only.")
    num_pages = serializers.IntegerField(
        required=False, allow_null=True, help_text="Page-number mode only; from count."
    )
    results = CustomerSerializer(many=True)


class ErrorSerializer(serializers.Serializer):
    """The body of an error other than invalid input: ``{"detail": "…"}``."""

    detail = serializers.CharField()


#: The body of a 400 on a write, for the OpenAPI document.
WRITE_ERRORS = OpenApiResponse(
    response={"type": "object", "additionalProperties": True},
    description="Invalid data: each field (nested for address and relationship) with its errors.",
)


# -- a row of an import ------------------------------------------------------------


def _text(value: Any) -> str | None:
    """A cleaned value as the staging table holds it (text; None for none)."""
    if value is None:
        return None
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)


def _first_messages(errors: Any, prefix: str = "") -> dict[str, str]:
    """A serializer's nested errors as ``{"address.city": "first message"}``."""
    if isinstance(errors, Mapping):
        found: dict[str, str] = {}
        for key, value in errors.items():
            name = key if key != "non_field_errors" else ""
            found.update(
                _first_messages(value, f"{prefix}.{name}" if prefix and name else name or prefix)
            )
        return found
    if isinstance(errors, list) and errors:
        first = errors[0]
        return (
            _first_messages(first, prefix) if isinstance(first, Mapping) else {prefix: str(first)}
        )
    return {}


def validated_import_row(
    row: dict[str, str | None], customer: AppUser | None
) -> tuple[dict[str, str], dict[str, str | None]]:
    """An import's row validated by :class:`CustomerWriteSerializer`, as the API
    validates a POST (a new customer) or a PUT of ``customer``: each invalid
    field's message, or the fields as the serializer cleaned them (text).

    A file's empty cell is a blank value where the field takes none (a 400
    "may not be blank", as the API says it) and none where it may be missing
    (a birthday); a loyalty record's empty cells are left out.
    """
    data: dict[str, Any] = {}
    for name, value in row.items():
        group, _, field = name.rpartition(".")
        target = data.setdefault(group, {}) if group else data
        model_field = {"": AppUser, "address": Address, "relationship": CustomerRelationship}[
            group
        ]._meta.get_field(field)
        if value in (None, "") and group == "relationship":
            continue
        if value is None and not model_field.null:
            value = ""
        target[field] = value
    if not data.get("relationship"):
        data.pop("relationship", None)
    serializer = CustomerWriteSerializer(customer, data=data)
    if not serializer.is_valid():
        return _first_messages(serializer.errors), {}
    cleaned = serializer.validated_data
    values: dict[str, str | None] = {}
    for name in row:
        group, _, field = name.rpartition(".")
        container = cleaned.get(group, {}) if group else cleaned
        if field in container:
            values[name] = _text(container[field])
    return {}, values
