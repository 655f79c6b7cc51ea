"""Changes of many customers at once: an import of a file, a change of a filtered list."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from core.customers.bulk import UNIQUE_FIELDS, ConfirmationNeeded, customers_bulk_update
from core.customers.imports import ImportResult, UnreadableFile, customer_import
from core.history.context import Source, Writer, writing_as
from core.security.permissions import requiring

from .params import BULK_PARAMETERS, PARAMETER_ERRORS, ImportParams, import_options
from .serializers import CustomerWriteSerializer, ErrorSerializer, validated_import_row
from .views import CustomerApiView, WriteConflict, customers


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The file is larger than this server takes."


class LengthRequired(APIException):
    status_code = status.HTTP_411_LENGTH_REQUIRED
    default_detail = "Send the file with a Content-Length."


class ImportSummarySchema(serializers.Serializer):
    import_id = serializers.CharField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    invalid = serializers.IntegerField()
    errors = serializers.ListField(
        child=serializers.DictField(), help_text='[{"line": 70001, "field": "birthday", …}]'
    )
    errors_not_shown = serializers.IntegerField(required=False)
    written = serializers.BooleanField(required=False, help_text="false: nothing was written.")
    changes = serializers.ListField(child=serializers.DictField(), required=False)


class CustomerImportApi(CustomerApiView):
    """Create and update customers from a file, in one transaction."""

    name = "Customer import"
    permission_classes = [requiring("core.add_appuser", "core.change_appuser")]

    @extend_schema(
        operation_id="customers_import",
        summary="Import customers from a CSV or NDJSON file",
        parameters=[ImportParams],
        # One media type that clients' generators know: the body is the file
        # whatever its Content-Type (text/csv, application/x-ndjson, …).
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={
            200: ImportSummarySchema,
            400: OpenApiResponse(
                ImportSummarySchema, description="Invalid rows (nothing written) or file."
            ),
            411: ErrorSerializer,
            413: ErrorSerializer,
        },
        description=(
            "The request body is the file: a CSV as the export writes it, or NDJSON (told apart "
            "by the first character: `{` is NDJSON), with any Content-Type. Rows are "
            "matched by customer_id (or e-mail where it is empty): new customers are created, "
            "known ones get the fields that differ, unchanged ones nothing. Every row is "
            "validated first; by default nothing is written if any is invalid. At most "
            "CRM_IMPORT_MAX_BYTES (manage.py import_customers takes any size)."
        ),
    )
    def post(self, request: Request) -> Response:
        options = import_options(request.query_params)
        limit = settings.CRM_IMPORT_MAX_BYTES
        length = request.META.get("CONTENT_LENGTH", "")
        if not length.isdigit():
            raise LengthRequired()
        if int(length) > limit:
            raise PayloadTooLarge(
                f"The file is {int(length):,} bytes; this server takes {limit:,}."
            )
        import_id = uuid.uuid4().hex
        try:
            with writing_as(Writer(Source.IMPORT, request.user.pk, import_id)):
                result = customer_import(
                    # WSGI reads no more than Content-Length bytes of a body.
                    request._request,
                    validate_row=validated_import_row,
                    match=options.get("match", "customer_id"),
                    skip_invalid=options.get("skip_invalid", False),
                    dry_run=options.get("dry_run", False),
                    timeout_ms=settings.CRM_IMPORT_TIMEOUT_MS,
                    import_id=import_id,
                )
        except UnreadableFile as exc:
            # The summary's shape, with nothing read: one answer for clients to parse.
            return Response(ImportResult(import_id, errors=exc.errors).as_json(), status=400)
        refused = result.invalid and not options.get("skip_invalid")
        return Response(result.as_json(), status=400 if refused else 200)


class BulkChangeSerializer(serializers.Serializer):
    """A change of many customers: a PATCH's body, and increments (``add``)."""

    add = serializers.DictField(required=False)


class CustomerBulkUpdateApi(CustomerApiView):
    """Change every customer a list query finds, in one transaction."""

    name = "Customer bulk update"
    permission_classes = [requiring("core.bulk_change_appuser")]

    @extend_schema(
        operation_id="customers_bulk_update",
        summary="Change every customer the filters find",
        parameters=BULK_PARAMETERS.openapi(),
        request={"application/json": OpenApiTypes.OBJECT},
        responses={
            200: OpenApiResponse(
                {
                    "type": "object",
                    "properties": {"matched": {"type": "integer"}, "updated": {"type": "integer"}},
                },
                description="How many matched, and how many changed.",
            ),
            400: PARAMETER_ERRORS,
            409: OpenApiResponse(ErrorSerializer, description="confirm names another count."),
        },
        description=(
            "Takes every list filter and search. The body is a PATCH's "
            '(`{"address": {"street": "…"}}`), or increments '
            '(`{"add": {"relationship": {"points": 100}}}`). Above CRM_BULK_CONFIRM_OVER '
            "matches it needs `confirm=` with their number. One transaction, the same row "
            "locks as single writes. Needs `core.bulk_change_appuser`."
        ),
    )
    def post(self, request: Request) -> Response:
        query = BULK_PARAMETERS.validate(request.query_params)
        values, increments = bulk_change(request.data)
        try:
            result = customers_bulk_update(
                customers(query),
                values=values,
                increments=increments,
                confirm=query.options.get("confirm"),
                confirm_over=settings.CRM_BULK_CONFIRM_OVER,
                dry_run=query.options.get("dry_run", False),
                timeout_ms=settings.CRM_BULK_TIMEOUT_MS,
            )
        except ConfirmationNeeded as exc:
            if exc.given is None:
                raise ValidationError(
                    {"confirm": [f"{exc.matched:,} customers match: give confirm={exc.matched}."]}
                ) from None
            raise WriteConflict(
                f"{exc.matched:,} customers match, not {exc.given:,}: nothing was written. "
                f"Check the filters, then give confirm={exc.matched}."
            ) from None
        return Response(result.as_json())


#: What ``add`` may increment: whole numbers of the loyalty record.
INCREMENTABLE = ("relationship.points",)


def bulk_change(body: Any) -> tuple[dict[str, Any], dict[str, int]]:
    """The body's values (validated as a PATCH's) and increments, by dotted
    name; or a 400 naming what is wrong."""
    if not isinstance(body, dict) or not body:
        raise ValidationError({"non_field_errors": ["Give the fields to set, or add."]})
    add = body.get("add")
    patch = {k: v for k, v in body.items() if k != "add"}
    unique = [name for name in UNIQUE_FIELDS if name in patch]
    if unique:
        raise ValidationError(
            {
                name: ["Each customer has their own: it cannot be set for many at once."]
                for name in unique
            }
        )
    values: dict[str, Any] = {}
    if patch:
        serializer = CustomerWriteSerializer(data=patch, partial=True)
        serializer.is_valid(raise_exception=True)
        for name, value in serializer.validated_data.items():
            if isinstance(value, dict):
                values.update({f"{name}.{inner}": v for inner, v in value.items()})
            else:
                values[name] = value
    increments: dict[str, int] = {}
    if add is not None:
        flat = {
            f"{group}.{name}": number
            for group, inner in (add.items() if isinstance(add, dict) else [])
            for name, number in (inner.items() if isinstance(inner, dict) else [])
        }
        wrong = [n for n in flat if n not in INCREMENTABLE] + (
            ["add"] if not isinstance(add, dict) or not flat else []
        )
        if wrong:
            raise ValidationError(
                {"add": [f"Only {', '.join(INCREMENTABLE)} can be added to (a whole number)."]}
            )
        for name, number in flat.items():
            if not isinstance(number, int) or isinstance(number, bool) or abs(number) > 2**31:
                raise ValidationError({"add": [f"{name}: a whole number."]})
            if name in values:
                raise ValidationError({"add": [f"{name} is both set and added to."]})
            increments[name] = number
    return values, increments
