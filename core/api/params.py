"""Strict query parameters of the customer list and export, and their OpenAPI description.

Every parameter is validated before a query is built: an unknown one (a
misspelled filter), a repeated or empty one, or a malformed value is a 400
that names it, never silently ignored. Filters are validated by the form
fields of :class:`core.customers.filters.CustomerFilter`; the views' own
parameters (search, ordering, pages, count, format) by the serializers below.
The OpenAPI parameters are read off the same fields, so the documentation
cannot drift from the validation.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.validators import MaxLengthValidator, MaxValueValidator, MinValueValidator
from django.http import QueryDict
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from core.customers.export import FORMATS
from core.customers.filters import CustomerFilter, InstantField, range_errors
from core.customers.ordering import SORT_FIELDS, InvalidOrdering, Ordering, customer_ordering
from core.customers.search import UnsearchableWord, check_searchable
from core.customers.tunables import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from core.history import selectors as history_selectors

#: The filters' form class and its fields, built once (django-filter builds
#: them per FilterSet).
FILTER_FORM = CustomerFilter().get_form_class()
FILTER_FIELDS = FILTER_FORM.base_fields

#: The range "format: int64" stands for.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

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
        # Bounds at or past a 64-bit column's own are what "format: int64" says
        # already; as JSON numbers, JavaScript (Swagger UI, ReDoc) would also
        # show 2**63 - 1 as 9223372036854776000.
        if schema.get("maximum", 0) >= INT64_MAX:
            del schema["maximum"]
        if schema.get("minimum", 0) <= INT64_MIN:
            del schema["minimum"]
        description = str(spec.extra.get("help_text", ""))
        if isinstance(field, InstantField):
            description += " ISO 8601 date or date-time; a date alone covers that whole day (UTC)."
        parameters.append(
            OpenApiParameter(name, schema, OpenApiParameter.QUERY, description=description)
        )
    return parameters


class CustomerQueryParams(serializers.Serializer):
    """Query parameters of every customer query other than filters (see
    core.customers.filters)."""

    search = serializers.CharField(
        required=False,
        max_length=100,
        help_text=(
            "Typo-tolerant search over first name, last name, full name, customer_id, phone "
            "number (words with a digit: at least three in a row) and city; every word must "
            "match; the closest names first unless an ordering is given."
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
        max_value=MAX_PAGE_SIZE,
        help_text=f"Rows per page, 1 to {MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE}).",
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
        choices=list(FORMATS),
        required=False,
        help_text=(
            "csv (the default), ndjson (one JSON object per line, nested as the list's rows) "
            "or json (one document); overrides the Accept header."
        ),
    )


@dataclass(frozen=True)
class CustomerRequest:
    """A validated request for customers: which ones, in which order, and the
    view's own parameters (``page``, ``page_size``, ``cursor``, ``count``;
    ``format``), keyed by name."""

    filters: dict[str, Any]
    search: str | None
    ordering: Ordering
    options: dict[str, Any]


class StrictParameters:
    """The strict query parameters of one view: the filters plus ``params_class``'s."""

    def __init__(self, params_class: type[serializers.Serializer]) -> None:
        self.params_class = params_class
        # Validated field by field, without a serializer or a form per
        # request: building either deep-copies every field (a third of the
        # parameters' cost), and these fields keep no state between values.
        self.control_fields = params_class().fields
        # DRF's ``format`` picks a renderer (?format=json).
        self.control_names = frozenset(self.control_fields) | {"format"}
        self.allowed = self.control_names | set(CustomerFilter.base_filters)

    def validate(self, query: QueryDict) -> CustomerRequest:
        """The request's parameters, or a 400 naming each invalid one."""
        errors: dict[str, list[str]] = {}
        for name in query:
            values = query.getlist(name)
            if name not in self.allowed:
                errors[name] = [
                    f"Unknown parameter. Allowed: {', '.join(sorted(self.allowed - {'format'}))}."
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
        options: dict[str, Any] = {}
        filters: dict[str, Any] = {}
        for name, value in query.items():
            if name in self.control_fields:
                try:
                    options[name] = self.control_fields[name].run_validation(value)
                except serializers.ValidationError as exc:
                    errors[name] = exc.detail
            elif name in FILTER_FIELDS:
                try:
                    cleaned = FILTER_FIELDS[name].clean(value)
                except forms.ValidationError as exc:
                    errors[name] = exc.messages
                else:
                    if cleaned not in (None, ""):
                        filters[name] = cleaned
        for name, message in range_errors(filters).items():
            errors.setdefault(name, []).append(message)
        if "ordering" in query and "order_by" in query:
            errors["order_by"] = ["Give ordering or its alias order_by, not both."]
        if "page" in query and "cursor" in query:
            errors["cursor"] = ["Give page (page-number mode) or cursor, not both."]
        if errors:
            raise ValidationError(errors)
        search = options.pop("search", None)
        if search is not None:
            try:
                check_searchable(search)
            except UnsearchableWord as exc:
                raise ValidationError({"search": [str(exc)]}) from None
        name = "order_by" if "order_by" in options else "ordering"
        try:
            ordering = customer_ordering(options.get(name), searching=search is not None)
        except InvalidOrdering as exc:
            raise ValidationError({name: [str(exc)]}) from None
        options.pop("ordering", None)
        options.pop("order_by", None)
        return CustomerRequest(filters, search, ordering, options)

    def openapi(self) -> list:
        """The OpenAPI parameters of the view, for ``extend_schema``."""
        return [self.params_class, *filter_parameters()]


class BulkUpdateParams(serializers.Serializer):
    """A change of many customers: which (every list filter, and ``search``),
    whether to write, and how many the client expects to change."""

    search = serializers.CharField(
        required=False, max_length=100, help_text="As the list's search: the customers it finds."
    )
    dry_run = serializers.BooleanField(
        required=False, help_text="1: write nothing; answer what would change."
    )
    confirm = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="How many customers match: needed above CRM_BULK_CONFIRM_OVER matches.",
    )


LIST_PARAMETERS = StrictParameters(CustomerListParams)
EXPORT_PARAMETERS = StrictParameters(CustomerExportParams)
BULK_PARAMETERS = StrictParameters(BulkUpdateParams)


class ImportParams(serializers.Serializer):
    """How an import treats its file."""

    dry_run = serializers.BooleanField(
        required=False, help_text="1: write nothing; answer what would change."
    )
    skip_invalid = serializers.BooleanField(
        required=False, help_text="1: write the valid rows even if some are invalid."
    )
    match = serializers.ChoiceField(
        choices=["customer_id", "email"],
        required=False,
        help_text="customer_id (the default: by customer_id, or by e-mail where it is empty) "
        "or email (by e-mail address only).",
    )


def import_options(query: QueryDict) -> dict[str, Any]:
    """An import's query parameters, or a 400 naming each unknown or invalid one."""
    allowed = set(ImportParams().fields)
    unknown = {name: ["Unknown parameter."] for name in query if name not in allowed}
    if unknown:
        raise ValidationError(unknown)
    params = ImportParams(data=query.dict())
    params.is_valid(raise_exception=True)
    return params.validated_data


# -- a customer's history ----------------------------------------------------------


class HistoryParams(serializers.Serializer):
    """The query parameters of a customer's history."""

    since = serializers.CharField(
        required=False, max_length=40, help_text="Events at or after (ISO 8601 date or date-time)."
    )
    until = serializers.CharField(
        required=False, max_length=40, help_text="Events at or before (ISO 8601 date or date-time)."
    )
    actor = serializers.CharField(
        required=False, max_length=150, help_text="Events written by this user (a user name)."
    )
    field = serializers.ChoiceField(
        choices=list(history_selectors.FIELDS),
        required=False,
        help_text="Events that changed this field, named as in the API (address.city).",
    )
    cursor = serializers.CharField(
        required=False, max_length=2000, help_text="Opaque position from a next link."
    )
    page_size = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_PAGE_SIZE,
        help_text=f"Events per page, 1 to {MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE}).",
    )

    def validate_since(self, value: str) -> Any:
        return instant(value, upper=False)

    def validate_until(self, value: str) -> Any:
        return instant(value, upper=True)

    def validate(self, attrs: dict) -> dict:
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and since > until:
            raise serializers.ValidationError({"since": ["since must not be after until."]})
        return attrs


def instant(value: str, *, upper: bool) -> Any:
    """An ISO 8601 date or date-time as the list's filters read it (a date alone
    is that whole day, UTC), or a validation error naming what is wrong."""
    try:
        cleaned = InstantField(upper=upper).clean(value)
    except forms.ValidationError as exc:
        raise serializers.ValidationError(exc.messages) from None
    moment, exclusive = cleaned
    # An exclusive upper bound (a date's next midnight) as the last instant before it.
    return moment - dt.timedelta(microseconds=1) if exclusive else moment


def history_query(query: QueryDict) -> tuple[history_selectors.EventFilters, dict[str, Any]]:
    """A history request's filters and its paging (``cursor``, ``page_size``),
    or a 400 naming each unknown, repeated or invalid parameter."""
    errors: dict[str, list[str]] = {}
    allowed = set(HistoryParams().fields)
    for name in query:
        if name not in allowed and name != "format":
            errors[name] = [f"Unknown parameter. Allowed: {', '.join(sorted(allowed))}."]
        elif len(query.getlist(name)) > 1:
            errors[name] = ["Given more than once; give it once."]
    if errors:
        raise ValidationError(errors)
    params = HistoryParams(data={k: v for k, v in query.items() if k != "format"})
    params.is_valid(raise_exception=True)
    data = params.validated_data
    actor = None
    if "actor" in data:
        actor = history_selectors.actor_id(data["actor"])
        if actor is None:
            raise ValidationError({"actor": [f"No user is named {data['actor']!r}."]})
    filters = history_selectors.EventFilters(
        since=data.get("since"), until=data.get("until"), actor=actor, field=data.get("field")
    )
    return filters, {"cursor": data.get("cursor"), "page_size": data.get("page_size")}
