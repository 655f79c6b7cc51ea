"""The HTTP API: thin views that validate, call a selector and present."""

from __future__ import annotations

import math
from typing import Any

from django import forms
from django.conf import settings
from django.core import signing
from django.core.validators import MaxLengthValidator, MaxValueValidator, MinValueValidator
from django.http import QueryDict
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from . import selectors
from .filters import CustomerFilter, InstantField
from .serializers import CustomerListParams, CustomerListSerializer, DetailSerializer

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


class CustomerListApi(CrmApiView):
    """Customers with their address and loyalty record: filter, sort, page."""

    #: Query parameters that are not filters. DRF's ``format`` picks a renderer.
    CONTROL_PARAMETERS = frozenset(CustomerListParams().fields) | {"format"}

    @extend_schema(
        operation_id="customers_list",
        parameters=[CustomerListParams, *filter_parameters()],
        responses={
            200: CustomerListSerializer,
            400: PARAMETER_ERRORS,
            401: OpenApiResponse(DetailSerializer, description="No or invalid credentials."),
            403: OpenApiResponse(DetailSerializer, description="No permission to read customers."),
            404: OpenApiResponse(DetailSerializer, description="A page past the end."),
            429: OpenApiResponse(
                DetailSerializer, description="Too many requests; see Retry-After."
            ),
            503: OpenApiResponse(
                DetailSerializer, description="Query too slow, or the database is unavailable."
            ),
        },
        description=(
            "Every filter combines with every other and with any ordering. Without `page` "
            "the list pages by cursor: follow `next`/`previous`; any depth costs the same. "
            "With `page` it pages by number (the deeper, the slower)."
        ),
    )
    def get(self, request: Request) -> Response:
        params, filters = self.validated(request.query_params)
        ordering = self.ordering(params)
        queryset = selectors.customer_list(filters=filters, ordering=ordering)
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
        body["results"] = selectors.customer_rows(row for row in page.rows)
        return Response(body)

    def validated(self, query: QueryDict) -> tuple[dict, dict]:
        """Strict parameters: unknown, repeated or empty ones are errors, never ignored."""
        errors: dict[str, list[str]] = {}
        allowed = self.CONTROL_PARAMETERS | set(CustomerFilter.base_filters)
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
        control = CustomerListParams(
            data={k: v for k, v in query.items() if k in self.CONTROL_PARAMETERS}
        )
        # The FilterSet's form validates the filters; instantiating the form
        # alone skips the FilterSet's deep copy of every filter.
        form = FILTER_FORM(
            data={k: v for k, v in query.items() if k not in self.CONTROL_PARAMETERS}
        )
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
            return selectors.customer_ordering(params.get(name))
        except selectors.InvalidOrdering as exc:
            raise ValidationError({name: [str(exc)]}) from None

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
