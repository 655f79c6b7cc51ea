"""The HTTP API: thin views that validate, call a selector or a service, and present."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from core.customers import selectors, services
from core.customers.columns import customer_rows
from core.customers.export import customer_export
from core.customers.pagination import CustomerPagination
from core.models import AppUser
from core.security.views import ProtectedApiView

from .params import (
    EXPORT_PARAMETERS,
    FILTER_FORM,
    LIST_PARAMETERS,
    PARAMETER_ERRORS,
    CustomerQuery,
)
from .renderers import (
    CsvRenderer,
    FastJSONRenderer,
    FilterFormBrowsableAPIRenderer,
    NdjsonRenderer,
)
from .serializers import (
    WRITE_ERRORS,
    CustomerPageSchema,
    CustomerSerializer,
    CustomerWriteSerializer,
    ErrorSerializer,
)


def customers(query: CustomerQuery):
    """The selector's queryset for a validated query."""
    return selectors.customer_list(
        filters=query.filters, ordering=query.ordering, search=query.search
    )


class CustomerFilterForm(FILTER_FORM):
    """The list's filters, search, ordering and page size as one form, for the
    browsable API (the API validates them with core.api.params)."""

    search = forms.CharField(required=False, max_length=100, help_text="Names, typos forgiven.")
    ordering = forms.CharField(
        required=False, max_length=500, help_text="e.g. -relationship__points,last_name"
    )
    page_size = forms.IntegerField(required=False, min_value=1, max_value=500)


class CustomerListApi(ProtectedApiView):
    """Customers with their address and loyalty record: filter, sort, page."""

    name = "Customers"  # the browsable API's title (DRF would say "Customer List Api")
    pagination_class = CustomerPagination
    renderer_classes = [FastJSONRenderer, FilterFormBrowsableAPIRenderer]
    filter_form_class = CustomerFilterForm

    @extend_schema(
        operation_id="customers_list",
        parameters=LIST_PARAMETERS.openapi(),
        responses={
            200: CustomerPageSchema,
            400: PARAMETER_ERRORS,
            404: OpenApiResponse(ErrorSerializer, description="A page past the end."),
        },
        description=(
            "Every filter combines with every other and with any ordering. Without `page` "
            "the list pages by cursor: follow `next`/`previous`; any depth costs the same. "
            "With `page` it pages by number (the deeper, the slower)."
        ),
    )
    def get(self, request: Request) -> Response:
        query = LIST_PARAMETERS.validate(request.query_params)
        paginator = self.pagination_class()
        rows = paginator.paginate_queryset(
            customers(query), query.ordering, request, **query.options
        )
        return paginator.get_paginated_response(customer_rows(rows))

    @extend_schema(
        operation_id="customers_create",
        request=CustomerWriteSerializer,
        responses={201: CustomerSerializer, 400: WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        """A new customer with their address and loyalty record, in one transaction."""
        pk = write_customer(CustomerWriteSerializer(data=request.data))
        return customer_response(pk, status=201)


# -- one customer, and writes ---------------------------------------------------


def customer_response(pk: int, status: int = 200) -> Response:
    """A customer as the list shows them, read back through the list's selector."""
    row = selectors.customer_detail(pk)
    if row is None:
        raise NotFound("No customer with this id.")
    return Response(row, status=status)


def write_customer(serializer: CustomerWriteSerializer, customer: AppUser | None = None) -> int:
    """Validate, then create or update through the services; a conflict is a 400."""
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


class CustomerDetailApi(ProtectedApiView):
    """One customer: read, replace (PUT), change (PATCH) or delete."""

    name = "Customer"

    def customer(self, pk: int) -> AppUser:
        customer = selectors.customer_for_update(pk)
        if customer is None:
            raise NotFound("No customer with this id.")
        return customer

    @extend_schema(responses={200: CustomerSerializer, 404: ErrorSerializer})
    def get(self, request: Request, pk: int) -> Response:
        return customer_response(pk)

    @extend_schema(
        request=CustomerWriteSerializer,
        responses={200: CustomerSerializer, 400: WRITE_ERRORS, 404: ErrorSerializer},
    )
    def put(self, request: Request, pk: int) -> Response:
        customer = self.customer(pk)
        write_customer(CustomerWriteSerializer(customer, data=request.data), customer)
        return customer_response(pk)

    @extend_schema(
        request=CustomerWriteSerializer,
        responses={200: CustomerSerializer, 400: WRITE_ERRORS, 404: ErrorSerializer},
    )
    def patch(self, request: Request, pk: int) -> Response:
        customer = self.customer(pk)
        serializer = CustomerWriteSerializer(customer, data=request.data, partial=True)
        write_customer(serializer, customer)
        return customer_response(pk)

    @extend_schema(responses={204: None, 404: ErrorSerializer})
    def delete(self, request: Request, pk: int) -> Response:
        services.customer_delete(self.customer(pk))
        return Response(status=204)


# -- export -------------------------------------------------------------------


class CustomerExportApi(ProtectedApiView):
    """Every matching customer, streamed as CSV or NDJSON with constant memory."""

    name = "Customer export"
    renderer_classes = [CsvRenderer, NdjsonRenderer]

    def handle_exception(self, exc):
        # Errors are JSON (as documented), whichever download format was asked for.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = "application/json"
        return super().handle_exception(exc)

    @extend_schema(
        operation_id="customers_export",
        parameters=EXPORT_PARAMETERS.openapi(),
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            (400, "application/json"): PARAMETER_ERRORS,
        },
        description="Takes every list filter, `search` and `ordering`; no pages, every row.",
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        query = EXPORT_PARAMETERS.validate(request.query_params)
        fmt = query.options.get("format", "csv")
        stream = customer_export(
            customers(query), query.ordering, fmt, timeout_ms=settings.CRM_EXPORT_TIMEOUT_MS
        )
        response = StreamingHttpResponse(
            stream,
            content_type="text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson",
        )
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="customers-{stamp}.{fmt}"'
        return response
