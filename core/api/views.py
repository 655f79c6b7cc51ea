"""The HTTP API: thin views that validate, call a selector or a service, and present."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django import forms
from django.conf import settings
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.http import parse_etags
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from core.customers import selectors, services
from core.customers.columns import customer_rows
from core.customers.export import CustomerExport
from core.customers.pagination import CustomerPagination
from core.customers.tunables import MAX_PAGE_SIZE
from core.customers.versions import customer_version
from core.models import AppUser
from core.security.export_slots import export_slot
from core.security.views import ProtectedApiView

from .params import (
    EXPORT_PARAMETERS,
    FILTER_FORM,
    LIST_PARAMETERS,
    PARAMETER_ERRORS,
    CustomerRequest,
)
from .renderers import DOWNLOAD_RENDERERS, FastJSONRenderer, FilterFormBrowsableAPIRenderer
from .serializers import (
    WRITE_ERRORS,
    CustomerPageSchema,
    CustomerSerializer,
    CustomerWriteSerializer,
    ErrorSerializer,
)


def customers(query: CustomerRequest) -> selectors.CustomerQuery:
    """The selector's query for a validated request."""
    return selectors.customer_list(
        filters=query.filters, ordering=query.ordering, search=query.search
    )


class BrowsableListForm(FILTER_FORM):
    """The list's filters, search, ordering and page size as one form, for the
    browsable API (the API validates them with core.api.params)."""

    search = forms.CharField(required=False, max_length=100, help_text="Names, typos forgiven.")
    ordering = forms.CharField(
        required=False, max_length=500, help_text="e.g. -relationship__points,last_name"
    )
    page_size = forms.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)


class CustomerApiView(ProtectedApiView):
    """A view of customers' personal data: no cache (a browser's, a proxy's)
    may keep any of its answers."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        add_never_cache_headers(response)
        return response


class PreconditionFailed(APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "The customer has changed since you read it; read it again."


class WriteConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Concurrent writes of this customer collided; nothing was written. Try again."


@contextmanager
def service_errors() -> Iterator[None]:
    """The write services' refusals as HTTP answers."""
    try:
        yield
    except services.CustomerNotFound:
        raise NotFound("No customer with this id.") from None
    except services.CustomerConflict as exc:
        raise ValidationError(
            {exc.field: [f"A customer with this {exc.field} exists already."]}
        ) from None
    except services.CustomerChanged as exc:
        raise PreconditionFailed(
            f"The customer has changed since you read it (now ETag {exc.current}); read it again."
        ) from None
    except services.CustomerWriteConflict:
        raise WriteConflict() from None


def if_match(request: Request) -> list[str] | None:
    """The versions ``If-Match`` accepts (``["*"]``: any), or None without the header."""
    header = request.headers.get("If-Match")
    return None if header is None else parse_etags(header)


def if_none_match(request: Request, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (or ``*``): the client has this
    version already. Compared weakly, as RFC 9110 says for this header."""
    header = request.headers.get("If-None-Match")
    if header is None:
        return False
    tags = {tag.removeprefix("W/") for tag in parse_etags(header)}
    return "*" in tags or etag in tags


def refuse_query_parameters(request: Request) -> None:
    """One customer and the writes take no query parameters: naming one is a 400."""
    unknown = [name for name in request.query_params if name != "format"]
    if unknown:
        raise ValidationError(
            {name: ["Unknown parameter: this operation takes none."] for name in unknown}
        )


def customer_response(pk: int, status: int = 200) -> Response:
    """A customer as the list shows them, read back through the list's selector,
    with their version as ``ETag``."""
    row = selectors.customer_detail(pk)
    if row is None:
        raise NotFound("No customer with this id.")
    return Response(row, status=status, headers={"ETag": customer_version(row)})


#: ``If-Match`` as the OpenAPI document describes it.
IF_MATCH = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description=(
        "Write only if the customer is still the version an earlier answer's ETag named "
        "(several may be given, comma-separated; * for any); otherwise 412."
    ),
)
#: ``If-None-Match`` as the OpenAPI document describes it.
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="The ETag of the version you hold (several comma-separated, or *): 304 if current.",
)
CHANGED = OpenApiResponse(ErrorSerializer, description="If-Match names an older version.")
COLLIDED = OpenApiResponse(
    ErrorSerializer, description="Concurrent writes kept colliding; nothing was written."
)
JSON_ONLY = "Request bodies are JSON (`Content-Type: application/json`) only."
#: What PUT and PATCH answer.
UPDATE_RESPONSES = {
    200: CustomerSerializer,
    400: WRITE_ERRORS,
    404: ErrorSerializer,
    409: COLLIDED,
    412: CHANGED,
}


class CustomerListApi(CustomerApiView):
    """Customers with their address and loyalty record: filter, sort, page."""

    name = "Customers"  # the browsable API's title (DRF would say "Customer List Api")
    pagination_class = CustomerPagination
    renderer_classes = [FastJSONRenderer, FilterFormBrowsableAPIRenderer]
    filter_form_class = BrowsableListForm

    @extend_schema(
        operation_id="customers_list",
        summary="List customers: filter, sort, page",
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
        rows = paginator.paginate(customers(query), request, **query.options)
        return paginator.get_paginated_response(customer_rows(rows))

    @extend_schema(
        operation_id="customers_create",
        summary="Create a customer",
        request=CustomerWriteSerializer,
        responses={201: CustomerSerializer, 400: WRITE_ERRORS, 409: COLLIDED},
        description=(
            "A new customer with their address and loyalty record; `Location` is its URL. "
            f"{JSON_ONLY}"
        ),
    )
    def post(self, request: Request) -> Response:
        """A new customer with their address and loyalty record, in one transaction."""
        refuse_query_parameters(request)
        serializer = CustomerWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with service_errors():
            customer = services.customer_create(**serializer.validated_data)
        response = customer_response(customer.pk, status=201)
        response["Location"] = request.build_absolute_uri(
            reverse("customer-detail", args=[customer.pk])
        )
        return response


# -- one customer, and writes ---------------------------------------------------


class CustomerDetailApi(CustomerApiView):
    """One customer: read, replace (PUT), change (PATCH) or delete.

    Writes are serialized per customer (see core.customers.services); with
    ``If-Match`` a client refuses to overwrite a change it has not seen.
    """

    name = "Customer"

    def customer(self, pk: int) -> AppUser:
        """The customer as stored now, to validate a write against (not locked:
        the service locks it and reads it again)."""
        customer = selectors.customer_for_update(pk)
        if customer is None:
            raise NotFound("No customer with this id.")
        return customer

    @extend_schema(
        operation_id="customers_retrieve",
        summary="Read one customer",
        parameters=[IF_NONE_MATCH],
        responses={
            200: CustomerSerializer,
            304: OpenApiResponse(description="If-None-Match names this version."),
            404: ErrorSerializer,
        },
        description=(
            "One customer, as the list shows them; `ETag` names this version. With "
            "`If-None-Match` naming it, a 304 without a body."
        ),
    )
    def get(self, request: Request, pk: int) -> Response:
        refuse_query_parameters(request)
        response = customer_response(pk)
        if if_none_match(request, response["ETag"]):
            return Response(status=304, headers={"ETag": response["ETag"]})
        return response

    def write(self, request: Request, pk: int, *, partial: bool) -> Response:
        refuse_query_parameters(request)
        serializer = CustomerWriteSerializer(self.customer(pk), data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        with service_errors():
            services.customer_update(pk, if_match=if_match(request), **serializer.validated_data)
        return customer_response(pk)

    @extend_schema(
        operation_id="customers_update",
        summary="Replace a customer",
        parameters=[IF_MATCH],
        request=CustomerWriteSerializer,
        responses=UPDATE_RESPONSES,
        description=f"Replace a customer's fields (the loyalty record is optional). {JSON_ONLY}",
    )
    def put(self, request: Request, pk: int) -> Response:
        return self.write(request, pk, partial=False)

    @extend_schema(
        operation_id="customers_partial_update",
        summary="Change some of a customer's fields",
        parameters=[IF_MATCH],
        request=CustomerWriteSerializer,
        responses=UPDATE_RESPONSES,
        description=(
            "Change the fields given, nested ones included; the others keep their values. "
            f"An address shared with other customers is copied, not changed for them. {JSON_ONLY}"
        ),
    )
    def patch(self, request: Request, pk: int) -> Response:
        return self.write(request, pk, partial=True)

    @extend_schema(
        operation_id="customers_destroy",
        summary="Delete a customer",
        parameters=[IF_MATCH],
        responses={204: None, 404: ErrorSerializer, 409: COLLIDED, 412: CHANGED},
        description="Delete a customer, their loyalty record, and their address unless shared.",
    )
    def delete(self, request: Request, pk: int) -> Response:
        refuse_query_parameters(request)
        with service_errors():
            services.customer_delete(pk, if_match=if_match(request))
        return Response(status=204)


# -- export -------------------------------------------------------------------


class CustomerExportApi(CustomerApiView):
    """Every matching customer, streamed as CSV, NDJSON or JSON with constant memory."""

    name = "Customer export"
    renderer_classes = DOWNLOAD_RENDERERS
    charges_worker_time = False  # an export's slots bound it (core.security.export_slots)

    def handle_exception(self, exc):
        # Errors are JSON (as documented), whichever download format was asked for.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = "application/json"
        return super().handle_exception(exc)

    @extend_schema(
        operation_id="customers_export",
        summary="Export every matching customer",
        parameters=EXPORT_PARAMETERS.openapi(),
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            (200, "application/json"): OpenApiTypes.OBJECT,
            (400, "application/json"): PARAMETER_ERRORS,
            (406, "application/json"): OpenApiResponse(
                ErrorSerializer, description="The Accept header names none of the formats."
            ),
        },
        description=(
            "Takes every list filter, `search` and `ordering`; no pages, every row. The format "
            "is `format=` if given, else the `Accept` header's (text/csv, application/x-ndjson, "
            "application/json), else CSV. CSV is a header and exactly the rows; NDJSON ends "
            'with `{"end_of_export": {"rows": N}}`; JSON is `{"results": [...], "count": N}`. '
            "The response is chunked: a stream that breaks off lacks HTTP's final chunk, which "
            "HTTP clients report as an error (curl exits with 18), so a download that ends "
            "without one is complete. At most `CRM_EXPORT_CONCURRENCY` exports per user at once "
            "(429 beyond)."
        ),
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        query = EXPORT_PARAMETERS.validate(request.query_params)
        renderer = request.accepted_renderer
        export = CustomerExport(
            customers(query),
            renderer.format,
            timeout_ms=settings.CRM_EXPORT_TIMEOUT_MS,
            guard=export_slot(request.user.pk, settings.CRM_EXPORT_CONCURRENCY),
        )
        response = StreamingHttpResponse(export.start(), content_type=renderer.content_type)
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        extension = renderer.format
        response["Content-Disposition"] = f'attachment; filename="customers-{stamp}.{extension}"'
        return response
