"""Where a page's JSON is cheaper to build: in Python (rows, dicts, orjson) or
in PostgreSQL (``row_to_json`` over the same page statement).

The API builds it in Python (:func:`core.customers.columns.customer_rows`,
then :class:`core.api.renderers.FastJSONRenderer`). PostgREST and this
project's floor (``bench/floor.py``) build it in the database, and no
Python object is made per row. :func:`json_paths` times both over the same
page statement, each run as the API runs it, and :func:`database_json` is
the PostgreSQL path, written from the row's declaration
(:data:`core.customers.columns.ROW`) so that the two give the same bytes.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import orjson
from django.db import connection

from core.customers.columns import GROUPS, OPTIONAL_GROUPS, ROW, customer_rows


def row_json_sql(alias: str) -> str:
    """One customer as JSON, from the columns of a page statement's row
    ``alias`` (named ``_`` + column, see ``row_expressions``). ``row_to_json``
    writes compact JSON as orjson does (``json_build_object`` puts spaces
    around its colons)."""

    def fields(group: str | None) -> list[str]:
        return [f'{alias}."_{c.column}" AS "{c.name}"' for c in ROW if c.group == group]

    parts = fields(None)
    for group in GROUPS:
        nested = f"(SELECT row_to_json(g) FROM (SELECT {', '.join(fields(group))}) g)"
        marker = OPTIONAL_GROUPS.get(group)
        if marker is not None:
            column = next(c.column for c in ROW if c.group == group and c.name == marker)
            nested = f'CASE WHEN {alias}."_{column}" IS NULL THEN NULL ELSE {nested} END'
        parts.append(f'{nested} AS "{group}"')
    return f"(SELECT row_to_json(c) FROM (SELECT {', '.join(parts)}) c)"


def database_json(sql: str, params: list) -> bytes:
    """The page statement's rows as one JSON array, built by PostgreSQL."""
    wrapped = (
        # string_agg, not json_agg: json_agg puts a space after each comma.
        f"SELECT '[' || coalesce(string_agg({row_json_sql('p')}::text, ',' "
        "ORDER BY p._position), '') || ']' "
        f"FROM (SELECT *, row_number() OVER () AS _position FROM ({sql}) page_rows) p"
    )
    with connection.cursor() as cursor:
        cursor.execute(wrapped, params)
        return cursor.fetchone()[0].encode()


def python_json(sql: str, params: list) -> bytes:
    """The page statement's rows as one JSON array, as the API builds it."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return orjson.dumps(customer_rows(rows))


@dataclass(frozen=True)
class JsonPaths:
    python_ms: float
    database_ms: float
    same_bytes: bool


def json_paths(sql: str, params: list, repeat: int = 300) -> JsonPaths:
    """Median wall time of each path (the client's CPU and the server's: on
    one machine they share its cores), alternating, and whether they agree."""
    times: dict[str, list[float]] = {"python": [], "database": []}
    for _ in range(repeat):
        for name, build in (("python", python_json), ("database", database_json)):
            started = time.perf_counter()
            build(sql, params)
            times[name].append((time.perf_counter() - started) * 1000)
    return JsonPaths(
        statistics.median(times["python"]),
        statistics.median(times["database"]),
        python_json(sql, params) == database_json(sql, params),
    )


def page_of(url: str, size: int = 50) -> tuple[str, list]:
    """The first page statement of the list request ``url`` (its query string)."""
    from django.http import QueryDict

    from core.api.params import LIST_PARAMETERS
    from core.customers.page_statement import page_statement
    from core.customers.plans import PagePosition, plan
    from core.customers.selectors import customer_list

    query = LIST_PARAMETERS.validate(QueryDict(url.partition("?")[2]))
    customers = customer_list(filters=query.filters, ordering=query.ordering, search=query.search)
    return page_statement(plan(customers, PagePosition(0, size), "none"))
