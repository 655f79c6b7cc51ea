"""The customer list's filters, declared once with django-filter.

The selector applies them (:func:`core.customers.selectors.customer_list`), the API
validates query parameters with their form fields (a bad value is a 400 that
names the parameter), and the OpenAPI schema documents them from here.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import django_filters
from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connections
from django.db.models import Model, Q, QuerySet, Value
from django.db.models.functions import Coalesce, StrIndex, Upper
from django.db.models.lookups import GreaterThan

from core.models import NO_BIRTHDAY, Address, AppUser, CustomerRelationship
from crm.replicas import read_alias

from .distinct import distinct_values_sql

#: Longest accepted substring filter: a longer one cannot match any column
#: (the widest is 100 characters) and would only cost trigram extraction.
MAX_SUBSTRING_LENGTH = 100

BIGINT_MAX = 2**63 - 1
INTEGER_MIN, INTEGER_MAX = -(2**31), 2**31 - 1


#: The relation from a customer to each of the other two tables.
RELATIONS: dict[str, type[Model]] = {"address": Address, "relationship": CustomerRelationship}


def related_model(field_name: str) -> type[Model]:
    """The model whose column ``field_name`` (a path from a customer) is."""
    relation, _, rest = field_name.partition("__")
    return RELATIONS[relation] if rest and relation in RELATIONS else AppUser


class Substring(django_filters.CharFilter):
    """Case-insensitive substring. Django escapes ``%`` and ``_`` inside
    ``icontains``, so they match literally; the resulting
    ``UPPER(col::text) LIKE UPPER('%…%')`` is served by the column's trigram
    index (see :mod:`core.models`) when the substring has a trigram to look
    up (:func:`has_trigram`).

    A substring without one ("sm", "a", "2 4") would make the trigram index
    return every row for PostgreSQL to recheck (3M rows, 1 to 2 s at 3M
    customers), and the planner cannot tell: it prices that scan like a
    selective one. Such a substring is written as ``strpos(UPPER(col),
    UPPER(…)) > 0``, the same rows, which no index matches: it is tested on
    the rows a plan reads for other reasons (see
    :mod:`core.customers.selectors`).
    """

    def __init__(self, field_name: str, help_text: str) -> None:
        super().__init__(
            field_name=field_name,
            lookup_expr="icontains",
            max_length=MAX_SUBSTRING_LENGTH,
            strip=False,
            help_text=help_text,
        )

    def filter(self, qs: QuerySet, value: str | None) -> QuerySet:
        if value is None or value == "":
            return super().filter(qs, value)
        return qs.filter(self.condition(value))

    def condition(self, text: str) -> Q:
        """The substring as a condition, for this filter and wherever else the
        column is searched (``?search=``'s phone numbers): through the trigram
        index where that narrows it (see :func:`has_trigram`,
        :func:`indexed_piece`), else tested on each row."""
        if not has_trigram(text):
            return self.each_row(text)
        piece = indexed_piece(text)
        indexed = Q(**{f"{self.field_name}__icontains": piece})
        # The index finds the rows with the piece; each is checked for the text.
        return indexed if piece == text else indexed & self.each_row(text)

    def each_row(self, text: str) -> Q:
        """The substring as ``strpos(…) > 0``: tested on each row a plan reads."""
        return Q(GreaterThan(StrIndex(Upper(self.field_name), Upper(Value(text))), 0))

    def filter_each_row(self, qs: QuerySet, text: str) -> QuerySet:
        """The substring tested on each row a plan reads (see :meth:`each_row`)."""
        return qs.filter(self.each_row(text))


#: The shortest word of a substring that the trigram index is asked for alone
#: (see :func:`indexed_piece`): three trigrams of its own.
INDEXED_PIECE_LENGTH = 5


def indexed_piece(text: str) -> str:
    """What of ``text`` to look up in the trigram index: its longest word of
    letters and digits, if that is long enough, else the whole text.

    pg_trgm looks up every trigram of the pattern and intersects them. The
    short words of a phone number ("+49 30 …") yield padded trigrams ("  4",
    " 30") that most numbers share: ``LIKE '%+49 30 78965766%'`` intersected
    lists of millions of entries to find one customer (23 ms at 3M), where
    ``LIKE '%78965766%'`` takes 1.6 ms, and the whole text is then checked on
    the row it finds.
    """
    words = re.findall(r"[^\W_]+", text)
    longest = max(words, key=len, default="")
    return longest if len(longest) >= INDEXED_PIECE_LENGTH else text


def has_trigram(text: str) -> bool:
    """Does pg_trgm find a trigram in ``LIKE '%text%'`` to look up in its index?

    pg_trgm splits a pattern into words of letters and digits; a word that a
    separator (a space, "(", "-") precedes within the pattern is padded with
    two blanks in front, one that a separator follows with one behind, and a
    word yields trigrams only if it is three characters long once padded.
    "smi", "(212) 5" and "31 86" ("31 ") have trigrams; "sm", "a" have none;
    "2 4" has only "  4", which most phone numbers share: counted as none.
    """
    for word in re.finditer(r"[^\W_]+", text):
        start, end = word.span()
        padded = len(word.group()) + (2 if start > 0 else 0) + (1 if end < len(text) else 0)
        # A one-character word's trigrams ("  4") are in most rows: no help.
        if padded >= 3 and len(word.group()) >= 2:
            return True
    return False


class DistinctSubstring(Substring):
    """A case-insensitive substring of a column with few distinct values (city,
    country: a few thousand at most), looked up among those values first.

    ``UPPER(city) LIKE '%VIENNA%'`` over 3M addresses is a trigram bitmap of
    every address whose city shares a trigram with "vienna", rechecked row by
    row, and the planner can only guess how many match. Asked of the 58
    distinct cities (a loose index scan of the column's b-tree, see
    :mod:`core.customers.distinct`), the same question returns ``['Vienna']``
    in well under a millisecond; ``city IN ('Vienna')`` is then an index
    range of ``address_city_id`` that the planner estimates from the column's
    most-common-value statistics, which hold every city. The same rows match
    either way.

    Override :meth:`values_containing` to look the values up elsewhere.
    """

    #: More values than this containing the text: test the text on each row
    #: instead (see :meth:`values_containing`). None: no limit.
    max_values: int | None = None

    def __init__(self, field_name: str, help_text: str) -> None:
        super().__init__(field_name, help_text)
        model, self.column = related_model(field_name), field_name.rsplit("__", 1)[-1]
        self.table = model._meta.db_table

    def filter(self, qs: QuerySet, value: str | list[str] | None) -> QuerySet:
        """``value`` is the substring, or the values containing it (already looked up)."""
        if value is None or value == "":
            return qs
        values = value if isinstance(value, list) else self.values_containing(value)
        if values is None:
            return self.filter_each_row(qs, value)
        if not values:
            # No value contains the text. ``IN ()`` is no SQL: Django raises
            # EmptyResultSet when such a query is compiled, which the
            # export's COPY, compiling the query itself, would answer with a
            # 500. ``WHERE false`` compiles, and PostgreSQL reads no row for it.
            return qs.filter(Value(False))
        return qs.filter(**{f"{self.field_name}__in": values})

    def values_containing(self, text: str, *, limited: bool = True) -> list[str] | None:
        """The column's distinct values that contain ``text``, any case; None if
        more than :attr:`max_values` do (unless not ``limited``)."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        most = self.max_values if limited else None
        limit = "" if most is None else f" LIMIT {int(most) + 1}"
        with connections[read_alias()].cursor() as cursor:
            cursor.execute(
                f"SELECT value FROM ({self.distinct_values_sql()}) v "
                f"WHERE upper(value) LIKE upper(%s){limit}",
                [pattern],
            )
            values = [row[0] for row in cursor.fetchall()]
        if most is not None and len(values) > most:
            return None
        return values

    def distinct_values_sql(self) -> str:
        """A query of the column's distinct values, as ``value``."""
        return distinct_values_sql(self.table, self.column)


class KnownNameSubstring(DistinctSubstring):
    """A case-insensitive substring of a first or last name, looked up among
    the known names (:class:`core.models.SearchTerm`: every name a customer
    has, kept so by the trigger ``appuser_names_known``) as a city among the
    cities.

    ``last_name=sm`` has no trigram for an index to look up: tested on each
    row, it cost a walk of the ordering's index or a join per customer until
    a page was full (half a second at 3M customers where the matches cluster,
    as names do by country). Asked of the ~11,000 known names through their
    trigram index, it is ``last_name IN ('Smith', 'Smithers', …)``: a range
    of ``appuser_last_name_id`` per name, which the planner estimates from
    the column's statistics and a count reads from the index alone.

    A text that too many names contain ("a", "e") matches most customers
    anyway: it is tested on each row, which a walk of any ordering finds
    soon.
    """

    #: A longer list costs more to plan and to probe than testing the text
    #: on the rows a walk reads: the names with an "a" match most customers.
    max_values = 500

    def distinct_values_sql(self) -> str:
        return (
            "SELECT value FROM core_searchterm "
            f"WHERE field = '{self.column}'"  # this project's own column name
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
            field_name="birthday",
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
        key = f"{self.field_name}_key"
        qs = qs.alias(**{key: Coalesce(self.field_name, Value(NO_BIRTHDAY))})
        if self.lookup_expr == "gte":
            # Born on or after a date: not the customers without a birthday,
            # whose key is NO_BIRTHDAY. Still one range of the index.
            return qs.filter(**{f"{key}__gte": value, f"{key}__lt": NO_BIRTHDAY})
        return qs.filter(**{f"{key}__{self.lookup_expr}": value})


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
    first_name = KnownNameSubstring("first_name", "Substring of the first name, any case.")
    last_name = KnownNameSubstring("last_name", "Substring of the last name, any case.")
    city = DistinctSubstring("address__city", "Substring of the city, any case.")
    country = DistinctSubstring("address__country", "Substring of the country, any case.")
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


# -- which table a filter reads ------------------------------------------------


def filter_table(name: str) -> type[Model]:
    """The model the filter ``name`` reads: AppUser, Address or CustomerRelationship."""
    return related_model(CustomerFilter.base_filters[name].field_name)


def apply_on_own_table(name: str, queryset: QuerySet, value) -> QuerySet:
    """Apply the filter ``name`` to a queryset of the model it reads (see
    :func:`filter_table`), e.g. ``points_min`` to CustomerRelationship rows as
    ``points >= …`` rather than to customers through a join."""
    spec = CustomerFilter.base_filters[name]
    if filter_table(name) is not AppUser:
        spec = copy.copy(spec)
        spec.field_name = spec.field_name.partition("__")[2]
    return spec.filter(queryset, value)
