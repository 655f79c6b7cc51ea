"""Page statements compiled once per shape of request, values bound as parameters.

Building and compiling the page statement through the ORM (three subqueries,
17 annotated columns) cost 0.8 to 2.1 ms of Python per request at 3M
customers, more than PostgreSQL took to run it. Yet two requests that differ
only in their values (``last_name=smith`` and ``last_name=jones``, page 2
and page 3, one cursor and another) compile to the same SQL text. So the
ORM still writes every statement, once per *shape*, and the text is kept:

* every value a request brings enters the query as a :class:`Param`, an
  expression that compiles to a placeholder and whose identity (what Django
  hashes and compares expressions and ``Q`` objects by) leaves its value
  out, so that a list query's conditions hash to their shape
  (:func:`shape_of`);
* LIMIT and OFFSET, which Django writes into the SQL text, are compiled
  from sentinel numbers (:data:`SENTINELS`) and turned back into
  placeholders;
* :func:`compile_statement` records, for each placeholder, which value of
  the request it takes (a :class:`CompiledStatement`'s recipe): a named
  slot (``"limit"``), or the position of its :class:`Param` among the
  shape's (:func:`params_in`, in the order of the conditions' structure,
  which requests of one shape share); and :class:`StatementCache` keeps the
  statements by shape, the least recently used dropped first.

Whatever the ORM writes with a plain value instead of a :class:`Param`
makes that value part of the shape (the ``Q``'s identity holds it): such a
statement is compiled once per value, never reused with another.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import itertools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db.models import (
    BigIntegerField,
    BooleanField,
    CharField,
    DateField,
    DateTimeField,
    Expression,
    Field,
    FloatField,
    Lookup,
    Q,
)

#: While set, a :class:`Param` compiles to itself (the statement cache reads
#: where each value goes); else to its value, as any other parameter.
_compiling_shape: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "compiling_shape", default=False
)

#: A value's type -> the field it compiles as (what ``Upper(Param("sm"))``
#: and the like need to know).
OUTPUT_FIELDS: tuple[tuple[type, Callable[[], Field]], ...] = (
    (bool, BooleanField),
    (int, BigIntegerField),
    (float, FloatField),
    (str, CharField),
    (dt.datetime, DateTimeField),
    (dt.date, DateField),
)


#: Serial numbers of Params, unique in the process.
_serials = itertools.count()


class Param(Expression):
    """A value of the request, bound as a parameter of the statement.

    ``slot`` names it among the request's values where it is made (the page
    statement's ``"limit"``); a Param without one is found by its position
    among the shape's (see :func:`compile_statement`), through ``serial``:
    the ORM copies expressions as it compiles them, and a copy keeps it.
    """

    def __init__(self, value: Any, *, slot: Hashable | None = None) -> None:
        output = next(
            (field() for kind, field in OUTPUT_FIELDS if isinstance(value, kind)), Field()
        )
        super().__init__(output_field=output)
        self.value, self.slot = value, slot
        self.serial = next(_serials)

    @property
    def identity(self) -> tuple:
        # Its kind, never its value: a condition's identity is its shape.
        return (Param, type(self.value).__name__, self.slot)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Param) and other.identity == self.identity

    def __hash__(self) -> int:
        return hash(self.identity)

    def __repr__(self) -> str:
        return f"Param({self.value!r}, slot={self.slot!r})"

    def as_sql(self, compiler, connection) -> tuple[str, list]:
        return "%s", [self if _compiling_shape.get() else self.value]


class AnyOf(Lookup):
    """``column = ANY(%s)``: membership in one array parameter, whatever its
    length (``IN (%s, %s, …)`` would make each length a shape of its own).
    PostgreSQL plans both alike: it turns an ``IN`` list into this."""

    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler, connection) -> tuple[str, list]:
        lhs_sql, lhs_params = compiler.compile(self.lhs)
        rhs_sql, rhs_params = compiler.compile(self.rhs)
        return f"{lhs_sql} = ANY({rhs_sql})", [*lhs_params, *rhs_params]


def params_in(*trees: Any) -> Iterator[Param]:
    """Every :class:`Param` of ``trees`` (``Q`` objects, expressions), in a
    fixed order: the order of their structure, which is their shape's."""
    for tree in trees:
        if isinstance(tree, Param):
            yield tree
        elif isinstance(tree, Q):
            for child in tree.children:
                yield from params_in(child[1] if isinstance(child, tuple) else child)
        elif hasattr(tree, "get_source_expressions"):
            yield from params_in(*tree.get_source_expressions())
        elif isinstance(tree, list | tuple):
            yield from params_in(*tree)


def param_values(*trees: Any) -> dict[int, Any]:
    """The values of the :class:`Param` objects of ``trees``, by position in
    :func:`params_in`'s order (a statement's recipe names these positions)."""
    return {position: param.value for position, param in enumerate(params_in(*trees))}


def shape_of(*parts: Any) -> Hashable | None:
    """A hashable key of ``parts`` (``Q`` objects, expressions and plain
    values) that equal shapes share, or None where a part cannot be hashed
    (such a statement is not kept)."""
    try:
        hash(parts)
    except TypeError:
        return None
    return parts


#: Sentinel numbers compiled in place of a LIMIT's or OFFSET's value, by the
#: name of the value each stands for. Far beyond any real row count, and
#: never a value of a filter (those are Params).
SENTINEL_BASE = 7_340_000_000_000_000_000
SENTINELS = {
    name: SENTINEL_BASE + i for i, name in enumerate(("offset", "limit", "budget", "before_budget"))
}
_SENTINEL_NAMES = {str(number): name for name, number in SENTINELS.items()}
_PLACEHOLDERS = re.compile(r"%%|%s|\b(" + "|".join(_SENTINEL_NAMES) + r")\b")


@contextmanager
def compiling_shape() -> Iterator[None]:
    """Compile :class:`Param` objects as themselves (see :func:`compile_statement`)."""
    token = _compiling_shape.set(True)
    try:
        yield
    finally:
        _compiling_shape.reset(token)


@dataclass(frozen=True)
class CompiledStatement:
    """SQL text with ``%s`` placeholders, and for each the request value it
    takes (a slot of the request's values) or a value fixed by the shape."""

    sql: str
    recipe: tuple[tuple[bool, Any], ...]

    def params(self, values: Mapping[Hashable, Any]) -> list:
        return [values[item] if is_slot else item for is_slot, item in self.recipe]


def compile_statement(sql: str, params: Iterable[Any], *trees: Any) -> CompiledStatement:
    """The statement ``sql, params`` compiled under :func:`compiling_shape`,
    with its :class:`Param` placeholders and sentinel numbers as slots: a
    Param's slot is its name, or its position among the Params of ``trees``
    (its first, where one Param stands in two places)."""
    positions: dict[int, int] = {}
    for position, param in enumerate(params_in(*trees)):
        positions.setdefault(param.serial, position)
    given = iter(params)
    recipe: list[tuple[bool, Any]] = []

    def placeholder(match: re.Match) -> str:
        if match.group() == "%%":
            return "%%"
        if match.group(1):
            recipe.append((True, _SENTINEL_NAMES[match.group(1)]))
            return "%s"
        param = next(given)
        if isinstance(param, Param):
            slot = param.slot if param.slot is not None else positions.get(param.serial)
            if slot is None:
                raise ValueError(f"{param!r} is in none of the shape's conditions")
            recipe.append((True, slot))
        else:
            recipe.append((False, param))
        return "%s"

    text = _PLACEHOLDERS.sub(placeholder, sql)
    left = object()
    if next(given, left) is not left:
        raise ValueError("more parameters than placeholders")
    return CompiledStatement(text, tuple(recipe))


class StatementCache:
    """Compiled statements by shape, at most ``size``, the least recently used
    dropped first. One per process; threads share it under a lock."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._statements: OrderedDict[Hashable, CompiledStatement] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, shape: Hashable, build: Callable[[], CompiledStatement]) -> CompiledStatement:
        """The statement of ``shape``, built (and kept) if it is not kept yet."""
        with self._lock:
            statement = self._statements.get(shape)
            if statement is not None:
                self._statements.move_to_end(shape)
                self.hits += 1
                return statement
        statement = build()
        with self._lock:
            self.misses += 1
            self._statements[shape] = statement
            while len(self._statements) > self.size:
                self._statements.popitem(last=False)
        return statement

    def __len__(self) -> int:
        return len(self._statements)

    def clear(self) -> None:
        with self._lock:
            self._statements.clear()
            self.hits = self.misses = 0
