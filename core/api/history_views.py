"""A person's history, their data and their erasure: thin views over core.history."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from core.customers.pagination import EventPagination
from core.history import selectors, services
from core.history.context import request_writer
from core.security.permissions import ERASE, READ_HISTORY, requiring

from .params import HistoryParams, history_query
from .serializers import ErrorSerializer
from .views import CustomerApiView, refuse_query_parameters, service_errors


class HistoryEventSchema(serializers.Serializer):
    """One event of a customer's history (the OpenAPI document's; the selector builds it)."""

    at = serializers.DateTimeField(help_text="When the statement that made the change ran.")
    actor = serializers.CharField(
        allow_null=True, help_text="The user who made it; null from outside the application."
    )
    source = serializers.ChoiceField(
        choices=["database", "api", "admin", "command", "import"],
        help_text="Where it came from: database for anything without the application's context.",
    )
    request_id = serializers.CharField(
        allow_null=True, help_text="The request's id (or the import's)."
    )
    kind = serializers.ChoiceField(
        choices=["created", "changed", "deleted", "truncated", "erased", "replaced"]
    )
    changes = serializers.DictField(
        child=serializers.ListField(),
        help_text="Each changed field, named as in the API (address.city): [old, new].",
    )


class HistoryPageSchema(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next (older) page, or null.")
    results = HistoryEventSchema(many=True)


class PersonalDataSchema(serializers.Serializer):
    customer = serializers.DictField(help_text="The customer, as GET /api/users/{id}/ shows them.")
    history = HistoryEventSchema(many=True)


class CustomerHistoryApi(CustomerApiView):
    """Every change of a customer, their address and loyalty record: who, when, what."""

    name = "Customer history"
    permission_classes = [requiring(*READ_HISTORY)]
    pagination_class = EventPagination

    @extend_schema(
        operation_id="customers_history",
        summary="A customer's history, newest first",
        parameters=[HistoryParams],
        responses={200: HistoryPageSchema, 400: ErrorSerializer, 404: ErrorSerializer},
        description=(
            "Every change PostgreSQL recorded for the customer, their address and loyalty "
            "record, whoever made it (the API, the admin, a command, an import, or SQL: "
            "`database`), newest first, by cursor. Needs `core.view_history`."
        ),
    )
    def get(self, request: Request, pk: int) -> Response:
        filters, paging = history_query(request.query_params)
        paginator = self.pagination_class()
        size = paging["page_size"] or paginator.page_size
        before = paginator.decode_cursor(paging["cursor"])
        events = selectors.customer_events(pk, filters=filters, before=before, limit=size + 1)
        if not events and before is None and not selectors.has_history(pk):
            raise NotFound("No customer with this id, and no history of one.")
        return paginator.get_paginated_response(request, events, size)


class CustomerPersonalDataApi(CustomerApiView):
    """Everything held about a person, in one document (GDPR articles 15 and 20)."""

    name = "Customer personal data"
    permission_classes = [requiring(*READ_HISTORY)]

    @extend_schema(
        operation_id="customers_personal_data",
        summary="Everything held about a customer",
        responses={200: PersonalDataSchema, 404: ErrorSerializer},
        description=(
            "The customer with their address and loyalty record, and their whole history, "
            "for access and portability. Needs `core.view_history`."
        ),
    )
    def get(self, request: Request, pk: int) -> Response:
        refuse_query_parameters(request)
        data = selectors.personal_data(pk)
        if data is None:
            raise NotFound("No customer with this id.")
        for event in data["history"]:
            event.pop("id")
        return Response(data)


class CustomerEraseApi(CustomerApiView):
    """The right to erasure: the person, and every trace of them, in one transaction."""

    name = "Customer erasure"
    permission_classes = [requiring(*ERASE)]

    @extend_schema(
        operation_id="customers_erase",
        summary="Erase a customer",
        request=None,
        responses={
            200: OpenApiResponse(
                {"type": "object", "properties": {"id": {"type": "integer"}}},
                description="Erased: only an event that they were (the id, who, when) stays.",
            ),
            404: ErrorSerializer,
        },
        parameters=[
            OpenApiParameter(
                "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Customer id."
            )
        ],
        description=(
            "Erases the customer and their loyalty record, their address unless someone else "
            "lives there, every event of their history, the admin's log entries about them and "
            "the known values only they held, in one transaction. One event stays: who erased "
            "the customer with this id, when, with which request id. A second call is a 404. "
            "Needs `core.erase_appuser`."
        ),
    )
    def post(self, request: Request, pk: int) -> Response:
        refuse_query_parameters(request)
        with service_errors():
            erased = services.customer_erase(pk, writer=request_writer())
        return Response({"id": pk, **erased})
