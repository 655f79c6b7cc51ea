"""The list's SQL, compiled once per shape of request and reused with new values.

Why: building a page's query with the ORM (a clone per ``filter()``,
``annotate()`` of the row's seventeen columns, ``order_by()``) and compiling
it to SQL is most of the Python work of a list request: measured with
``bench_profile``, about 40% of the CPU time of the first page. Yet two
requests that differ only in their values (another surname, another cursor
position, the same filters a second later) compile to the same SQL with other
parameters.

How: the first request of a *shape* (which filters, which ordering, which
kind of page: everything but the values) builds its query with *sentinels* in
place of its values, compiles it, and records where each sentinel landed
among the SQL's parameters: as itself, or inside a ``LIKE`` pattern
(``%SMITH%``, which the ORM escapes). Later requests of the shape take that
SQL and put their own values in those places, escaped as the ORM would have.
The first request also compiles its real query with the ORM and checks that
the substitution gives the same SQL and parameters; a shape that fails the
check (its SQL depends on the values themselves) is never reused. The ORM
stays the only thing that writes the list's SQL.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from django.db import connection
from django.db.models import QuerySet

#: Shapes remembered per process (least recently used first out).
MAX_SHAPES = 1024

#: What a parameter of a shape's SQL is: one of the request's values, one
#: inside a LIKE pattern (prefix, value's index, suffix), or a constant.
_VALUE, _PATTERN, _CONSTANT = 0, 1, 2


def sentinel(value: Any, index: int) -> Any:
    """A stand-in for ``value`` of the same type that no real value equals."""
    if isinstance(value, bool):
        raise TypeError("a boolean belongs to the shape, not to the values")
    if isinstance(value, int):
        return -7_777_000_000_000 - index
    if isinstance(value, float):
        return -7.777e300 - index * 1e290
    if isinstance(value, str):
        return f"\x1fcrm-sentinel-{index}\x1f"
    if isinstance(value, dt.datetime):
        return dt.datetime(1901, 2, 3, 4, 5, 6, 700_000 + index, tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.date(1902, 3, 4) + dt.timedelta(days=index)
    raise TypeError(f"no sentinel for {type(value).__name__}")


class _Template:
    """A shape's SQL and where the request's values go in its parameters."""

    def __init__(self, sql: str, slots: list[tuple]) -> None:
        self.sql, self.slots = sql, slots

    def params(self, values: Sequence[Any]) -> list[Any]:
        like = connection.ops.prep_for_like_query
        params = []
        for kind, *slot in self.slots:
            if kind == _VALUE:
                params.append(values[slot[0]])
            elif kind == _PATTERN:
                prefix, index, suffix = slot
                params.append(prefix + like(values[index]) + suffix)
            else:
                params.append(slot[0])
        return params


def _template(sql: str, params: Sequence[Any], sentinels: Sequence[Any]) -> _Template | None:
    by_value = {(type(s), s): i for i, s in enumerate(sentinels)}
    strings = [(i, s) for i, s in enumerate(sentinels) if isinstance(s, str)]
    slots: list[tuple] = []
    for param in params:
        index = by_value.get((type(param), param))
        if index is not None:
            slots.append((_VALUE, index))
            continue
        if isinstance(param, str):
            inside = [(i, s) for i, s in strings if s in param]
            if len(inside) > 1:
                return None
            if inside:
                index, marker = inside[0]
                prefix, _, suffix = param.partition(marker)
                slots.append((_PATTERN, prefix, index, suffix))
                continue
        slots.append((_CONSTANT, param))
    return _Template(sql, slots)


def compile_queryset(queryset: QuerySet) -> tuple[str, tuple]:
    """The SQL and parameters the ORM would send for ``queryset``."""
    return queryset.query.sql_with_params()


class PreparedQueries:
    """SQL templates by shape (see the module docstring), for one kind of query."""

    def __init__(self, max_shapes: int = MAX_SHAPES) -> None:
        self.max_shapes = max_shapes
        self.templates: OrderedDict[Hashable, _Template | None] = OrderedDict()
        self.lock = threading.Lock()

    def sql(
        self,
        shape: Hashable,
        values: Sequence[Any],
        build: Callable[[Sequence[Any]], QuerySet],
    ) -> tuple[str, list[Any]]:
        """The SQL and parameters of ``build(values)``, from the shape's template
        when it has one. ``build`` must make the same query for any values of
        the same types: all that varies with them belongs in ``shape``."""
        with self.lock:
            known = shape in self.templates
            template = self.templates.get(shape)
            if known:
                self.templates.move_to_end(shape)
        if template is not None:
            return template.sql, template.params(values)
        real_sql, real_params = compile_queryset(build(values))
        if known:  # a shape whose SQL depends on its values
            return real_sql, list(real_params)
        try:
            sentinels = [sentinel(value, i) for i, value in enumerate(values)]
        except TypeError:
            template = None
        else:
            sql, params = compile_queryset(build(sentinels))
            template = _template(sql, params, sentinels)
            if template is not None and (
                template.sql != real_sql or template.params(values) != list(real_params)
            ):
                template = None
        with self.lock:
            self.templates[shape] = template
            while len(self.templates) > self.max_shapes:
                self.templates.popitem(last=False)
        return real_sql, list(real_params)
