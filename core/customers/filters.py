"""The customer list's filters, declared once with django-filter.

The selector applies them (:func:`core.customers.selectors.customer_list`), the API
validates query parameters with their form fields (a bad value is a 400 that
names the parameter), and the OpenAPI schema documents them from here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import django_filters
from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db.models import QuerySet, Value
from django.db.models.functions import Coalesce

from core.models import NO_BIRTHDAY, AppUser

#: Longest accepted substring filter: a longer one cannot match any column
#: (the widest is 100 characters) and would only cost trigram extraction.
MAX_SUBSTRING_LENGTH = 100

BIGINT_MAX = 2**63 - 1
INTEGER_MIN, INTEGER_MAX = -(2**31), 2**31 - 1


class Substring(django_filters.CharFilter):
    """Case-insensitive substring. Django escapes ``%`` and ``_`` inside
    ``icontains``, so they match literally; the resulting
    ``UPPER(col::text) LIKE UPPER('%…%')`` is served by the column's trigram
    index (see :mod:`core.models`)."""

    def __init__(self, field_name: str, help_text: str) -> None:
        super().__init__(
            field_name=field_name,
            lookup_expr="icontains",
            max_length=MAX_SUBSTRING_LENGTH,
            strip=False,
            help_text=help_text,
        )


class BoundedInteger(django_filters.NumberFilter):
    """An integer within the column's range: a value PostgreSQL would reject
    ("integer out of range") is a 400 naming the parameter, never a 500."""

    field_class = forms.IntegerField


class InstantField(forms.CharField):
    """An ISO 8601 date or date-time, cleaned to ``(instant, exclusive)``.

    A date alone means that whole day in UTC: ``created_to=2024-05-31``
    includes the 31st, as a person reads a date range. A date-time without an
    offset is UTC.
    """

    def __init__(self, *, upper: bool = False, **kwargs) -> None:
        self.upper = upper
        kwargs.setdefault("max_length", 40)
        super().__init__(**kwargs)

    def clean(self, value):
        value = super().clean(value)
        if not value:
            return None
        try:
            if "T" not in value and " " not in value:
                start = dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), dt.UTC)
                if self.upper:
                    return start + dt.timedelta(days=1), True
                return start, False
            instant = dt.datetime.fromisoformat(value)
        except (ValueError, OverflowError):
            raise forms.ValidationError(
                "Enter an ISO 8601 date (2024-05-31) or date-time (2024-05-31T12:00:00Z).",
                code="invalid",
            ) from None
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=dt.UTC)
        return instant, False


class InstantBound(django_filters.Filter):
    """An inclusive bound on a timestamp column (``created_from``, ``created_to``)."""

    field_class = InstantField

    def __init__(self, field_name: str, *, upper: bool, help_text: str) -> None:
        super().__init__(field_name=field_name, upper=upper, help_text=help_text)
        self.upper = upper

    def filter(self, qs: QuerySet, value) -> QuerySet:
        if not value:
            return qs
        instant, exclusive = value
        lookup = ("lt" if exclusive else "lte") if self.upper else "gte"
        return qs.filter(**{f"{self.field_name}__{lookup}": instant})


class BirthdayBound(django_filters.DateFilter):
    """A bound on the birthday, compared through the same
    ``COALESCE(birthday, '9999-12-31')`` expression that the birthday index
    holds, so that a range is an index scan. Bounds stop at 9999-12-30, so a
    missing birthday never falls in a range."""

    def __init__(self, lookup_expr: str, help_text: str) -> None:
        super().__init__(
            lookup_expr=lookup_expr,
            help_text=help_text,
            validators=[
                MinValueValidator(dt.date(1, 1, 1)),
                MaxValueValidator(NO_BIRTHDAY - dt.timedelta(days=1)),
            ],
        )

    def filter(self, qs: QuerySet, value: dt.date | None) -> QuerySet:
        if value is None:
            return qs
        return qs.alias(birthday_key=Coalesce("birthday", Value(NO_BIRTHDAY))).filter(
            **{f"birthday_key__{self.lookup_expr}": value}
        )


#: Parameters that bound one range: (start, end).
RANGES = (
    ("created_from", "created_to"),
    ("birthday_from", "birthday_to"),
    ("points_min", "points_max"),
    ("last_activity_from", "last_activity_to"),
)


def range_errors(cleaned: Mapping[str, Any]) -> dict[str, str]:
    """Ranges whose start is after their end, by the start's parameter."""
    errors = {}
    for low, high in RANGES:
        start, end = cleaned.get(low), cleaned.get(high)
        if start is None or end is None:
            continue
        if isinstance(start, tuple):  # (instant, exclusive)
            start, end = start[0], end[0]
        if start > end:
            errors[low] = f"{low} must not be after {high}."
    return errors


class CustomerFilterForm(forms.Form):
    """Checks across parameters: a range whose start is after its end."""

    def clean(self) -> dict:
        cleaned = super().clean()
        for name, message in range_errors(cleaned).items():
            self.add_error(name, message)
        return cleaned


class CustomerFilter(django_filters.FilterSet):
    # Case-insensitive substrings.
    first_name = Substring("first_name", "Substring of the first name, any case.")
    last_name = Substring("last_name", "Substring of the last name, any case.")
    city = Substring("address__city", "Substring of the city, any case.")
    country = Substring("address__country", "Substring of the country, any case.")
    phone_number = Substring("phone_number", "Substring of the phone number.")
    # Exact.
    id = BoundedInteger(min_value=1, max_value=BIGINT_MAX, help_text="The customer's id.")
    gender = django_filters.ChoiceFilter(
        choices=AppUser.Gender.choices, help_text="m (male), f (female) or o (other)."
    )
    customer_id = django_filters.CharFilter(max_length=64, help_text="Exact customer number.")
    city_code = django_filters.CharFilter(
        field_name="address__city_code", max_length=20, help_text="Exact postal code."
    )
    # Inclusive ranges.
    created_from = InstantBound("created", upper=False, help_text="Created on or after.")
    created_to = InstantBound("created", upper=True, help_text="Created on or before.")
    birthday_from = BirthdayBound("gte", "Born on or after (YYYY-MM-DD).")
    birthday_to = BirthdayBound("lte", "Born on or before (YYYY-MM-DD).")
    points_min = BoundedInteger(
        field_name="relationship__points",
        lookup_expr="gte",
        min_value=INTEGER_MIN,
        max_value=INTEGER_MAX,
        help_text="At least this many loyalty points.",
    )
    points_max = BoundedInteger(
        field_name="relationship__points",
        lookup_expr="lte",
        min_value=INTEGER_MIN,
        max_value=INTEGER_MAX,
        help_text="At most this many loyalty points.",
    )
    last_activity_from = InstantBound(
        "relationship__last_activity", upper=False, help_text="Last active on or after."
    )
    last_activity_to = InstantBound(
        "relationship__last_activity", upper=True, help_text="Last active on or before."
    )

    class Meta:
        model = AppUser
        fields: list[str] = []
        form = CustomerFilterForm
