"""The API's shapes: query parameters in, customers out.

The list does not run these serializers per row (see
:func:`core.selectors.customer_rows` for why); they declare the response for
the OpenAPI schema, and a test checks that the fast path produces exactly
this shape.
"""

from __future__ import annotations

from rest_framework import serializers

from .models import Address, AppUser, CustomerRelationship


class AddressSerializer(serializers.ModelSerializer):
    class Meta:
        model = Address
        fields = ["street", "street_number", "city_code", "city", "country"]


class RelationshipSerializer(serializers.ModelSerializer):
    class Meta:
        model = CustomerRelationship
        fields = ["points", "created", "last_activity"]


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


class CustomerListParams(serializers.Serializer):
    """The list's query parameters other than filters (see core.filters)."""

    ordering = serializers.CharField(
        required=False,
        max_length=500,
        help_text=(
            "Comma-separated fields, '-' for descending: id, first_name, last_name, "
            "customer_id, birthday, created, last_updated, address__city, "
            "address__country, relationship__points, relationship__last_activity. "
            "The customer id always breaks ties. Default: id."
        ),
    )
    order_by = serializers.CharField(required=False, max_length=500, help_text="Alias of ordering.")
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
