"""The HTTP API: thin views that validate, call a selector and present."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from django import forms
from django.conf import settings
from django.core import signing
from django.core.validators import MaxLengthValidator, MaxValueValidator, MinValueValidator
from django.db import connections
from django.http import QueryDict, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from crm.replicas import read_alias

from . import selectors, services
from .filters import CustomerFilter, InstantField
from .serializers import (
    CustomerExportParams,
    CustomerListParams,
    CustomerListSerializer,
    CustomerSerializer,
    CustomerWriteSerializer,
    DetailSerializer,
)

CURSOR_SALT = "core.customers.cursor"

#: The filters' form class, built once (django-filter builds it per FilterSet).
FILTER_FORM = CustomerFilter().get_form_class()

#: JSON body of a 400: each invalid parameter with what is wrong.
PARAMETER_ERRORS = OpenApiResponse(
    response={
        "type": "object",
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    },
    description="Invalid query parameters: each one named, with what is allowed.",
)


WRITE_ERRORS = OpenApiResponse(
    response={"type": "object", "additionalProperties": True},
    description="Invalid data: each field (nested for address and relationship) with its errors.",
)


def filter_parameters() -> list[OpenApiParameter]:
    """OpenAPI parameters for every filter, read off the form fields that validate them."""
    parameters = []
    for name, spec in CustomerFilter.base_filters.items():
        field = spec.field
        schema: dict[str, Any] = {"type": "string", "minLength": 1}
        if isinstance(field, forms.IntegerField):
            schema = {"type": "integer", "format": "int64"}
        elif isinstance(field, forms.DateField):
            schema["format"] = "date"
        elif isinstance(field, forms.ChoiceField):
            schema["enum"] = [value for value, _ in field.choices if value]
        for validator in field.validators:
            # django-filter adds its own ±1e50 guard: the tightest bound wins.
            limit = getattr(validator, "limit_value", None)
            if isinstance(validator, MinValueValidator) and schema["type"] == "integer":
                schema["minimum"] = max(schema.get("minimum", limit), limit)
            elif isinstance(validator, MaxValueValidator) and schema["type"] == "integer":
                schema["maximum"] = min(schema.get("maximum", limit), limit)
            elif isinstance(validator, MaxLengthValidator):
                schema["maxLength"] = validator.limit_value
        description = str(spec.extra.get("help_text", ""))
        if isinstance(field, InstantField):
            description += " ISO 8601 date or date-time; a date alone covers that whole day (UTC)."
        parameters.append(
            OpenApiParameter(name, schema, OpenApiParameter.QUERY, description=description)
        )
    return parameters


class CrmApiView(APIView):
    """Base of the API's views: throttles come before permissions.

    DRF checks permissions first, so an anonymous client would get its 401
    without ever being counted, and the per-IP limit would never apply.
    """

    def initial(self, request: Request, *args, **kwargs) -> None:
        self.format_kwarg = self.get_format_suffix(**kwargs)
        neg = self.perform_content_negotiation(request)
        request.accepted_renderer, request.accepted_media_type = neg
        version, scheme = self.determine_version(request, *args, **kwargs)
        request.version, request.versioning_scheme = version, scheme
        self.perform_authentication(request)
        self.check_throttles(request)
        self.check_permissions(request)


class CustomerQueryMixin:
    """Strict query parameters shared by the list and the export: filters
    (core.filters), ``search``, ordering, and the view's own (``params_class``)."""

    params_class: type = CustomerListParams

    @classmethod
    def control_parameters(cls) -> frozenset[str]:
        # DRF's ``format`` picks a renderer (?format=json).
        return frozenset(cls.params_class().fields) | {"format"}

    def validated(self, query: QueryDict) -> tuple[dict, dict]:
        """Strict parameters: unknown, repeated or empty ones are errors, never ignored."""
        errors: dict[str, list[str]] = {}
        control_names = self.control_parameters()
        allowed = control_names | set(CustomerFilter.base_filters)
        for name in query:
            values = query.getlist(name)
            if name not in allowed:
                errors[name] = [
                    f"Unknown parameter. Allowed: {', '.join(sorted(allowed - {'format'}))}."
                ]
            elif len(values) > 1:
                errors[name] = ["Given more than once; give it once."]
            elif values[0] == "":
                errors[name] = ["Empty; leave the parameter out or give it a value."]
            elif "\ufffd" in values[0]:
                # Django decodes invalid UTF-8 percent-escapes to U+FFFD.
                errors[name] = ["Not valid UTF-8 once percent-decoded."]
        if errors:
            raise ValidationError(errors)
        control = self.params_class(data={k: v for k, v in query.items() if k in control_names})
        # The FilterSet's form validates the filters; instantiating the form
        # alone skips the FilterSet's deep copy of every filter.
        form = FILTER_FORM(data={k: v for k, v in query.items() if k not in control_names})
        if not control.is_valid():
            errors.update(control.errors)
        if not form.is_valid():
            errors.update(form.errors)
        if "ordering" in query and "order_by" in query:
            errors["order_by"] = ["Give ordering or its alias order_by, not both."]
        if "page" in query and "cursor" in query:
            errors["cursor"] = ["Give page (page-number mode) or cursor, not both."]
        if errors:
            raise ValidationError(errors)
        filters = {
            name: value
            for name, value in form.cleaned_data.items()
            if name in query and value not in (None, "")
        }
        return control.validated_data, filters

    def ordering(self, params: dict) -> selectors.Ordering:
        name = "order_by" if "order_by" in params else "ordering"
        try:
            return selectors.customer_ordering(params.get(name), searching="search" in params)
        except selectors.InvalidOrdering as exc:
            raise ValidationError({name: [str(exc)]}) from None

    def customers(self, params: dict, filters: dict) -> tuple:
        ordering = self.ordering(params)
        queryset = selectors.customer_list(
            filters=filters, ordering=ordering, search=params.get("search")
        )
        return queryset, ordering


class CustomerListApi(CustomerQueryMixin, CrmApiView):
    """Customers with their address and loyalty record: filter, sort, page."""

    @extend_schema(
        operation_id="customers_list",
        parameters=[CustomerListParams, *filter_parameters()],
        responses={
            200: CustomerListSerializer,
            400: PARAMETER_ERRORS,
            404: OpenApiResponse(DetailSerializer, description="A page past the end."),
        },
        description=(
            "Every filter combines with every other and with any ordering. Without `page` "
            "the list pages by cursor: follow `next`/`previous`; any depth costs the same. "
            "With `page` it pages by number (the deeper, the slower)."
        ),
    )
    def get(self, request: Request) -> Response:
        params, filters = self.validated(request.query_params)
        queryset, ordering = self.customers(params, filters)
        size = params.get("page_size", settings.CRM_PAGE_SIZE)
        url = request.build_absolute_uri()
        body: dict[str, Any] = {}
        if "page" in params:
            number = params["page"]
            page = selectors.offset_page(queryset, ordering, page=number, size=size)
            if not page.rows and number > 1:
                raise NotFound(f"Page {number} is past the end of the results.")
            seen_all = (number - 1) * size + len(page.rows) if not page.has_next else None
            body["next"] = replace_query_param(url, "page", number + 1) if page.has_next else None
            body["previous"] = (
                replace_query_param(url, "page", number - 1) if page.has_previous else None
            )
        else:
            after, before = self.cursor(params, ordering)
            page = selectors.keyset_page(queryset, ordering, size=size, after=after, before=before)
            first_and_last = not page.has_next and not page.has_previous
            seen_all = len(page.rows) if first_and_last else None
            body["next"] = (
                self.link(url, ordering, page.key_values(page.rows[-1], ordering), False)
                if page.has_next and page.rows
                else None
            )
            if page.has_previous and page.rows:
                body["previous"] = self.link(
                    url, ordering, page.key_values(page.rows[0], ordering), True
                )
            elif page.has_previous:
                # An empty page after a cursor: the previous page ends at it.
                body["previous"] = remove_query_param(url, "cursor")
            else:
                body["previous"] = None
        count = selectors.customer_count(
            queryset,
            params.get("count", "estimated"),
            exact_threshold=settings.CRM_EXACT_COUNT_THRESHOLD,
            known_total=seen_all,
        )
        body = {"count": count.value, "count_is_estimate": count.is_estimate, **body}
        if "page" in params:
            body["page"], body["page_size"] = params["page"], size
            body["num_pages"] = (
                max(1, math.ceil(count.value / size)) if count.value is not None else None
            )
        body["results"] = selectors.customer_rows(page.rows)
        return Response(body)

    @extend_schema(
        operation_id="customers_create",
        request=CustomerWriteSerializer,
        responses={201: CustomerSerializer, 400: WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        """A new customer with their address and loyalty record, in one transaction."""
        pk = write_customer(CustomerWriteSerializer(data=request.data))
        return customer_response(pk, status=201)

    def cursor(self, params: dict, ordering: selectors.Ordering):
        """Decode ``cursor`` into (after, before) key values, or raise a 400."""
        token = params.get("cursor")
        if token is None:
            return None, None
        try:
            payload = signing.loads(token, salt=CURSOR_SALT)
            issued_for, raw_values, backwards = payload["o"], payload["k"], bool(payload["b"])
        except (signing.BadSignature, KeyError, TypeError, ValueError):
            raise ValidationError(
                {"cursor": ["Invalid cursor: use the next or previous link of a response."]}
            ) from None
        if issued_for != ordering.spec:
            raise ValidationError(
                {
                    "cursor": [
                        f"This cursor belongs to ordering {issued_for!r}; "
                        f"the request asks for {ordering.spec!r}."
                    ]
                }
            )
        try:
            values = [
                selectors.key_from_json(key.kind, value)
                for key, value in zip(ordering.keys, raw_values, strict=True)
            ]
        except (TypeError, ValueError):
            raise ValidationError(
                {"cursor": ["Invalid cursor: its position is malformed."]}
            ) from None
        return (None, values) if backwards else (values, None)

    def link(self, url: str, ordering: selectors.Ordering, values: list, backwards: bool) -> str:
        return replace_query_param(url, "cursor", encode_cursor(ordering, values, backwards))


def encode_cursor(ordering: selectors.Ordering, values: list, backwards: bool) -> str:
    """A signed, opaque position: the key values of a boundary row, the ordering
    they belong to, and the direction to read from there."""
    return signing.dumps(
        {"o": ordering.spec, "k": [selectors.key_to_json(v) for v in values], "b": int(backwards)},
        salt=CURSOR_SALT,
        compress=True,
    )


# -- one customer, and writes ---------------------------------------------------


def customer_response(pk: int, status: int = 200) -> Response:
    """A customer as the list shows them, read back through the list's selector."""
    row = selectors.customer_detail(pk)
    if row is None:
        raise NotFound("No customer with this id.")
    return Response(row, status=status)


def write_customer(serializer: CustomerWriteSerializer, customer=None) -> int:
    serializer.is_valid(raise_exception=True)
    data = dict(serializer.validated_data)
    try:
        if customer is None:
            customer = services.customer_create(**data)
        else:
            customer = services.customer_update(customer, **data)
    except services.CustomerConflict:
        raise ValidationError(
            {"customer_id": ["A customer with this customer_id exists already."]}
        ) from None
    return customer.pk


class CustomerDetailApi(CrmApiView):
    """One customer: read, replace (PUT), change (PATCH) or delete."""

    def customer(self, pk: int):
        customer = selectors.customer_for_update(pk)
        if customer is None:
            raise NotFound("No customer with this id.")
        return customer

    @extend_schema(responses={200: CustomerSerializer, 404: DetailSerializer})
    def get(self, request: Request, pk: int) -> Response:
        return customer_response(pk)

    @extend_schema(
        request=CustomerWriteSerializer,
        responses={200: CustomerSerializer, 400: WRITE_ERRORS, 404: DetailSerializer},
    )
    def put(self, request: Request, pk: int) -> Response:
        customer = self.customer(pk)
        write_customer(CustomerWriteSerializer(customer, data=request.data), customer)
        return customer_response(pk)

    @extend_schema(
        request=CustomerWriteSerializer,
        responses={200: CustomerSerializer, 400: WRITE_ERRORS, 404: DetailSerializer},
    )
    def patch(self, request: Request, pk: int) -> Response:
        customer = self.customer(pk)
        serializer = CustomerWriteSerializer(customer, data=request.data, partial=True)
        write_customer(serializer, customer)
        return customer_response(pk)

    @extend_schema(responses={204: None, 404: DetailSerializer})
    def delete(self, request: Request, pk: int) -> Response:
        services.customer_delete(self.customer(pk))
        return Response(status=204)


# -- export -------------------------------------------------------------------


class StreamRenderer(BaseRenderer):
    """Names a download format for content negotiation (``?format=csv``); the
    export streams its own bytes, and errors are rendered as JSON."""

    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return json.dumps(data).encode()


class CsvRenderer(StreamRenderer):
    media_type = "text/csv"
    format = "csv"


class NdjsonRenderer(StreamRenderer):
    media_type = "application/x-ndjson"
    format = "ndjson"


class CustomerExportApi(CustomerQueryMixin, CrmApiView):
    """Every matching customer, streamed as CSV or NDJSON with constant memory."""

    params_class = CustomerExportParams
    renderer_classes = [CsvRenderer, NdjsonRenderer]

    def handle_exception(self, exc):
        # Errors are JSON (as documented), whichever download format was asked for.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = "application/json"
        return super().handle_exception(exc)

    @extend_schema(
        operation_id="customers_export",
        parameters=[CustomerExportParams, *filter_parameters()],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            (400, "application/json"): PARAMETER_ERRORS,
        },
        description="Takes every list filter, `search` and `ordering`; no pages, every row.",
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        params, filters = self.validated(request.query_params)
        queryset, ordering = self.customers(params, filters)
        fmt = params.get("format", "csv")
        sql, sql_params = selectors.customer_export_sql(queryset, ordering, fmt)
        response = StreamingHttpResponse(
            stream_copy(sql, sql_params),
            content_type="text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson",
        )
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="customers-{stamp}.{fmt}"'
        return response


def stream_copy(sql: str, params: list) -> Iterator[bytes]:
    """Yield ``COPY … TO STDOUT`` output as PostgreSQL sends it.

    The request's statement timeout is meant for pages, not for streaming
    millions of rows: the export has its own, restored afterwards.
    """
    # The export reads where the list reads: a replica when one is healthy.
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(
            "SELECT set_config('statement_timeout', %s, false)",
            [str(settings.CRM_EXPORT_TIMEOUT_MS)],
        )
        try:
            # Django's debug cursor (DEBUG on) takes no parameters for COPY:
            # use psycopg's own cursor underneath.
            with cursor.cursor.copy(sql, params) as copy:
                for block in copy:
                    yield bytes(block)
        finally:
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, false)",
                [str(settings.CRM_STATEMENT_TIMEOUT_MS)],
            )
