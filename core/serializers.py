"""The API's shapes: query parameters in, customers out.

The list does not run these serializers per row (see
:func:`core.selectors.customer_rows` for why); they declare the response for
the OpenAPI schema, and a test checks that the fast path produces exactly
this shape.
"""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from .models import Address, AppUser, CustomerRelationship
from .selectors import SORT_FIELDS

EARLIEST_BIRTHDAY = dt.date(1900, 1, 1)
#: A client's clock may lag the server's: "now" a few seconds ago is still now.
LAST_ACTIVITY_TOLERANCE = dt.timedelta(seconds=60)


class AddressSerializer(serializers.ModelSerializer):
    class Meta:
        model = Address
        fields = ["street", "street_number", "city_code", "city", "country"]


class RelationshipSerializer(serializers.ModelSerializer):
    class Meta:
        model = CustomerRelationship
        fields = ["points", "created", "last_activity"]


class RelationshipWriteSerializer(serializers.ModelSerializer):
    points = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)

    class Meta:
        model = CustomerRelationship
        fields = ["points", "created", "last_activity"]
        read_only_fields = ["created"]
        extra_kwargs = {"last_activity": {"required": False}}


class CustomerSerializer(serializers.ModelSerializer):
    address = AddressSerializer()
    relationship = RelationshipSerializer(allow_null=True)

    class Meta:
        model = AppUser
        fields = [
            "id",
            "first_name",
            "last_name",
            "gender",
            "customer_id",
            "phone_number",
            "birthday",
            "created",
            "last_updated",
            "address",
            "relationship",
        ]


class CustomerWriteSerializer(CustomerSerializer):
    """A customer with their address and loyalty record, as clients write them.

    Validation only; :mod:`core.services` writes, in one transaction.
    """

    relationship = RelationshipWriteSerializer(required=False)

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


class CustomerListSerializer(serializers.Serializer):
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


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


class CustomerQueryParams(serializers.Serializer):
    """Query parameters of every customer query other than filters (see core.filters)."""

    search = serializers.CharField(
        required=False,
        max_length=100,
        help_text=(
            "Typo-tolerant search over first name, last name, full name, customer_id, phone "
            "number and city; every word must match; ranked by trigram similarity unless an "
            "ordering is given."
        ),
    )

    ordering = serializers.CharField(
        required=False,
        max_length=500,
        help_text=(
            f"Comma-separated fields, '-' for descending: {', '.join(SORT_FIELDS)}. "
            "The customer id always breaks ties. Default: id."
        ),
    )
    order_by = serializers.CharField(required=False, max_length=500, help_text="Alias of ordering.")


class CustomerListParams(CustomerQueryParams):
    """The list's query parameters other than filters: these and its pages and count."""

    page = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=10_000_000,
        help_text="Page number (page-number mode). Without it the list pages by cursor.",
    )
    page_size = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=500,
        help_text="Rows per page, 1 to 500 (default 50).",
    )
    cursor = serializers.CharField(
        required=False,
        max_length=2000,
        help_text="Opaque position from a next/previous link (cursor mode).",
    )
    count = serializers.ChoiceField(
        choices=["exact", "estimated", "none"],
        required=False,
        help_text=(
            "exact: COUNT(*); estimated (default): exact when the planner expects at most "
            "a threshold of rows, otherwise its estimate; none: no count."
        ),
    )


class CustomerExportParams(CustomerQueryParams):
    """The export's query parameters other than filters: these and its format."""

    format = serializers.ChoiceField(
        choices=["csv", "ndjson"], required=False, help_text="csv (default) or ndjson."
    )
