"""The customer list's filters, declared once with django-filter.

The selector applies them to the read table (:func:`core.customers.selectors.customer_list`),
the API validates query parameters with their form fields (a bad value is a
400 that names the parameter), and the OpenAPI schema documents them from
here. Each filter also says what it means on the planning sample
(:meth:`sample_test`, see :mod:`core.customers.sample`), so that the list
can estimate how many customers a combination matches without asking
PostgreSQL first.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import django_filters
import numpy as np
from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Func, Q, Value
from django.db.models.functions import StrIndex, Upper
from django.db.models.lookups import GreaterThan

from core.folding import FUNCTION, fold
from core.models import NO_BIRTHDAY, CustomerRow
from core.read_table import Column, Filter, ReadTable, read_table

from . import tunables
from .sample import ListSample, instant_number
from .statements import AnyOf, Param

#: Longest accepted substring filter: the widest text column the list
#: filters by substring; a longer text cannot match and would only cost
#: trigram extraction.
MAX_SUBSTRING_LENGTH = max(
    column.field.max_length
    for column in read_table(CustomerRow).columns
    if column.listed.filter in (Filter.KNOWN, Filter.SUBSTRING)
)

BIGINT_MAX = 2**63 - 1
INTEGER_MIN, INTEGER_MAX = -(2**31), 2**31 - 1


def upper(text: str) -> str:
    """PostgreSQL's ``upper()``: one character for one (Python maps ß to SS)."""
    return "".join(c.upper() if len(c.upper()) == 1 else c for c in text)


class ListFilter:
    """What a list filter adds to django-filter's: its condition as one ``Q``
    (which the page statement composes, see :mod:`core.customers.page_statement`),
    its meaning on the sample, and whether an index finds its matches (a
    sort reads them through it)."""

    def condition(self, value: Any) -> Q:
        return Q(**{f"{self.field_name}__{self.lookup_expr}": Param(value)})

    def sample_test(self, sample: ListSample, value: Any) -> np.ndarray:
        """Which of the sample's rows match: a boolean array."""
        raise NotImplementedError

    def indexed(self, value: Any) -> bool:
        """Does an index of the read table find the matches of ``value``?"""
        return True


class Substring(ListFilter, django_filters.CharFilter):
    """Case-insensitive substring of a column whose values are nearly all
    distinct (the phone number), looked up by its trigrams.

    Django escapes ``%`` and ``_`` inside ``icontains``, so they match
    literally; the resulting ``UPPER(col::text) LIKE UPPER('%…%')`` is
    served by the column's trigram index (see :mod:`core.models`) when the
    substring has a trigram to look up (:func:`has_trigram`).

    A substring without one ("2 4", "+") would make the trigram index return
    every row for PostgreSQL to recheck (3M rows, 1 to 2 s at 3M customers),
    and the planner cannot tell: it prices that scan like a selective one.
    Such a substring is written as ``strpos(UPPER(col), UPPER(…)) > 0``, the
    same rows, which no index matches: it is tested on the rows a plan reads
    for other reasons.
    """

    def __init__(self, field_name: str, help_text: str) -> None:
        super().__init__(
            field_name=field_name,
            lookup_expr="icontains",
            max_length=MAX_SUBSTRING_LENGTH,
            strip=False,
            help_text=help_text,
        )

    def condition(self, text: str) -> Q:
        """The substring as a condition, for this filter and wherever else the
        column is searched (``?search=``'s phone numbers): through the trigram
        index where that narrows it (see :func:`has_trigram`,
        :func:`indexed_piece`), else tested on each row."""
        if not has_trigram(text):
            return contains(self.field_name, text)
        piece = indexed_piece(text)
        indexed = Q(**{f"{self.field_name}__icontains": Param(piece)})
        if piece == text:
            return indexed
        # The index finds the rows with the piece; each is checked for the text.
        return indexed & contains(self.field_name, text)

    def sample_test(self, sample: ListSample, value: str) -> np.ndarray:
        return sample.contains(self.field_name, upper(value))

    def indexed(self, value: str) -> bool:
        return has_trigram(value)


def one_of(column: str, values: list[str]) -> Q:
    """``column = ANY(values)``, or ``column = value`` for one value.

    PostgreSQL reads an equality as a prefix of a b-tree that the IN list of
    a single value is not (it turns ``IN ('x')`` into an equality, but not
    ``= ANY('{x}')``): ``country = 'United States'`` ordered by city walks the
    (country, city, id) index within the country (4 ms at 3M), the array
    walked the city index through every country (561 ms)."""
    if len(values) == 1:
        return Q(**{column: Param(values[0])})
    return Q(AnyOf(F(column), Param(values)))


def contains(column: str, text: str) -> Q:
    """``strpos(UPPER(column), UPPER(text)) > 0``: the same rows as ``ILIKE``,
    which no index serves: tested on each row a plan reads."""
    return Q(GreaterThan(StrIndex(Upper(column), Upper(Param(text))), 0))


def contains_folded(column: str, text: str) -> Q:
    """:func:`contains`, both sides folded (:mod:`core.folding`)."""
    folded = Func(F(column), function=FUNCTION, output_field=models.TextField())
    return Q(GreaterThan(StrIndex(folded, Param(fold(text))), 0))


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
    return longest if len(longest) >= tunables.INDEXED_PIECE_LENGTH else text


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


class KnownValueSubstring(Substring):
    """A case-insensitive substring of a column with few distinct values (a
    first or last name, a city, a country), looked up among those values first.

    ``last_name=sm`` has no trigram for an index to look up: tested on each
    row, it costs a walk of the ordering's index or a read of every row.
    Asked of the ~11,000 known names (:class:`core.models.SearchTerm`, which
    holds every value a customer has; :mod:`core.customers.known`), it is
    ``last_name IN ('Smith', 'Smart', …)``: a range of the ``(last_name,
    first_name, id)`` b-tree per name, which the planner estimates from the
    column's statistics. Cities (58) and countries (10) the same way.

    The filter's value is what the look-up found (a list, see
    :func:`core.customers.selectors.customer_list`), or the text itself where
    too many values contain it (``first_name=a``): it matches most customers
    then, and is tested on each row a plan reads. Either way folded
    (:mod:`core.folding`): ``last_name=müll`` finds Mueller.
    """

    def condition(self, value: str | list[str]) -> Q:
        if isinstance(value, str):
            return contains_folded(self.field_name, value)
        if not value:
            # No value contains the text: ``WHERE false`` reads nothing.
            return Q(Value(False))
        return one_of(self.field_name, value)

    def sample_test(self, sample: ListSample, value: str | list[str]) -> np.ndarray:
        if isinstance(value, str):
            return sample.contains_folded(self.field_name, fold(value))
        return sample.isin(self.field_name, value)

    def indexed(self, value: str | list[str]) -> bool:
        return not isinstance(value, str)


class Exact(ListFilter, django_filters.CharFilter):
    """Equal to the value as the column's source field stores it (its
    ``get_prep_value``): ``customer_id``, ``city_code``."""

    #: The field of the table of record the column copies.
    source: models.Field

    def condition(self, value: str) -> Q:
        return super().condition(self.source.get_prep_value(value))

    def sample_test(self, sample: ListSample, value: str) -> np.ndarray:
        return sample.equals(self.field_name, self.source.get_prep_value(value))


class Choice(ListFilter, django_filters.ChoiceFilter):
    """One of a few values (``gender``): no index, a third of the customers each."""

    def sample_test(self, sample: ListSample, value: str) -> np.ndarray:
        return sample.equals(self.field_name, value)

    def indexed(self, value: str) -> bool:
        return False


class BoundedInteger(ListFilter, django_filters.NumberFilter):
    """An integer within the column's range: a value PostgreSQL would reject
    ("integer out of range") is a 400 naming the parameter, never a 500."""

    field_class = forms.IntegerField

    def sample_test(self, sample: ListSample, value: int) -> np.ndarray:
        return sample.compare(self.field_name, self.lookup_expr, value)


#: The offsets time zones use, from Baker Island's to Kiribati's.
EARLIEST_OFFSET, LATEST_OFFSET = -dt.timedelta(hours=12), dt.timedelta(hours=14)


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
        elif not EARLIEST_OFFSET <= instant.utcoffset() <= LATEST_OFFSET:
            # Python takes offsets up to ±23:59, PostgreSQL only to ±15:59 (a
            # 500 with the value in its traceback); no time zone is beyond these.
            raise forms.ValidationError(
                "The offset is outside those time zones use (-12:00 to +14:00).", code="offset"
            )
        return instant, False


class InstantBound(ListFilter, django_filters.Filter):
    """An inclusive bound on a timestamp column (``created_from``, ``created_to``)."""

    field_class = InstantField

    def __init__(self, field_name: str, *, upper: bool, help_text: str) -> None:
        super().__init__(field_name=field_name, upper=upper, help_text=help_text)
        self.upper = upper

    def lookup(self, value) -> str:
        _, exclusive = value
        return ("lt" if exclusive else "lte") if self.upper else "gte"

    def condition(self, value) -> Q:
        return Q(**{f"{self.field_name}__{self.lookup(value)}": Param(value[0])})

    def sample_test(self, sample: ListSample, value) -> np.ndarray:
        return sample.compare(self.field_name, self.lookup(value), instant_number(value[0]))


class DateBound(ListFilter, django_filters.DateFilter):
    """A bound on a date column, compared through its key column where the
    column may be NULL (the birthday's ``birthday_key``: the birthday, or
    :data:`core.models.NO_BIRTHDAY` for none), which its b-tree holds, so that
    a range is an index scan. Bounds stop the day before that stand-in, so a
    missing date never falls in a range."""

    def __init__(self, column: Column, lookup_expr: str, help_text: str) -> None:
        super().__init__(
            field_name=column.name,
            lookup_expr=lookup_expr,
            help_text=help_text,
            validators=[
                MinValueValidator(dt.date(1, 1, 1)),
                MaxValueValidator(NO_BIRTHDAY - dt.timedelta(days=1)),
            ],
        )
        self.key = column.key
        self.nullable = column.key != column.name

    def condition(self, value: dt.date) -> Q:
        if self.lookup_expr == "gte" and self.nullable:
            # On or after a date: not the rows without one, whose key is the
            # stand-in. Still one range of the index.
            return Q(**{f"{self.key}__gte": Param(value), f"{self.key}__lt": NO_BIRTHDAY})
        return Q(**{f"{self.key}__{self.lookup_expr}": Param(value)})

    def sample_test(self, sample: ListSample, value: dt.date) -> np.ndarray:
        test = sample.compare(self.key, self.lookup_expr, value.toordinal())
        if self.lookup_expr == "gte" and self.nullable:
            test &= sample.compare(self.key, "lt", NO_BIRTHDAY.toordinal())
        return test


def list_filters(table: ReadTable) -> dict[str, ListFilter]:
    """The list's filters, by parameter name, from the read table's
    declaration (each column's :class:`core.read_table.Filter`)."""
    filters: dict[str, ListFilter] = {}
    for column in table.columns:
        kind, source = column.listed.filter, column.source
        label = str(source.verbose_name)
        if kind is Filter.KNOWN:
            filters[column.name] = KnownValueSubstring(
                column.name, f"Substring of the {label}, any case."
            )
        elif kind is Filter.SUBSTRING:
            filters[column.name] = Substring(column.name, f"Substring of the {label}, any case.")
        elif kind is Filter.CHOICE:
            choices = ", ".join(f"{value} ({name.lower()})" for value, name in source.choices)
            filters[column.name] = Choice(
                field_name=column.name, choices=source.choices, help_text=f"{choices}."
            )
        elif kind is Filter.EXACT and isinstance(column.field, models.IntegerField):
            filters[column.name] = BoundedInteger(
                field_name=column.name,
                min_value=1,
                max_value=BIGINT_MAX,
                help_text=f"Exact {label}.",
            )
        elif kind is Filter.EXACT:
            filters[column.name] = Exact(
                field_name=column.key, max_length=source.max_length, help_text=f"Exact {label}."
            )
            filters[column.name].source = source
        elif kind is Filter.RANGE:
            filters.update(range_filters(column, label))
    return filters


def range_filters(column: Column, label: str) -> dict[str, ListFilter]:
    """The two bounds of an inclusive range: ``_from``/``_to`` of a time or a
    date, ``_min``/``_max`` of a number."""
    name, field, label = column.name, column.field, label.capitalize()
    if isinstance(field, models.DateTimeField):
        return {
            f"{name}_from": InstantBound(name, upper=False, help_text=f"{label} on or after."),
            f"{name}_to": InstantBound(name, upper=True, help_text=f"{label} on or before."),
        }
    if isinstance(field, models.DateField):
        return {
            f"{name}_from": DateBound(column, "gte", f"{label} on or after (YYYY-MM-DD)."),
            f"{name}_to": DateBound(column, "lte", f"{label} on or before (YYYY-MM-DD)."),
        }
    limits = {"min_value": INTEGER_MIN, "max_value": INTEGER_MAX}
    return {
        f"{name}_min": BoundedInteger(
            field_name=name, lookup_expr="gte", help_text=f"{label}: at least this.", **limits
        ),
        f"{name}_max": BoundedInteger(
            field_name=name, lookup_expr="lte", help_text=f"{label}: at most this.", **limits
        ),
    }


def range_pairs(names: list[str]) -> tuple[tuple[str, str], ...]:
    """Parameters that bound one range, as (start, end)."""
    return tuple(
        (name, name.removesuffix(low) + high)
        for name in names
        for low, high in (("_from", "_to"), ("_min", "_max"))
        if name.endswith(low)
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


class RangeCheckForm(forms.Form):
    """Checks across parameters: a range whose start is after its end."""

    def clean(self) -> dict:
        cleaned = super().clean()
        for name, message in range_errors(cleaned).items():
            self.add_error(name, message)
        return cleaned


class CustomerFilterMeta:
    model = CustomerRow
    fields: list[str] = []
    form = RangeCheckForm


#: The list's filters: one, or a range's two, per column the read table
#: (core.models.CustomerRow) declares filterable.
CustomerFilter: type[django_filters.FilterSet] = type(
    "CustomerFilter",
    (django_filters.FilterSet,),
    {**list_filters(read_table(CustomerRow)), "Meta": CustomerFilterMeta},
)

#: Parameters that bound one range: (start, end).
RANGES = range_pairs(list(CustomerFilter.base_filters))
