"""Every matching customer, streamed by PostgreSQL's ``COPY … TO STDOUT``.

PostgreSQL renders the rows itself, CSV (with its quoting of commas, quotes
and newlines) or one JSON object per line, and psycopg hands the bytes
through: no Python object per row, constant memory whatever the row count.
The columns are the list's row (:data:`core.customers.columns.ROW`), with the
nested objects flattened (``address_city``).
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db import connections, transaction
from django.db.models import QuerySet

from crm.observability import metrics
from crm.replicas import read_alias

from .columns import ROW
from .ordering import Ordering

FORMATS = ("csv", "ndjson")


def customer_export_sql(queryset: QuerySet, ordering: Ordering, fmt: str) -> tuple[str, list]:
    """The ``COPY … TO STDOUT`` statement that streams every row of ``queryset``."""
    names = {f"_x_{column.flat_name}": column.expression() for column in ROW}
    query = queryset.annotate(**names).values_list(*names).order_by(*ordering.order_by())
    sql, params = query.query.sql_with_params()
    if fmt == "csv":
        columns = ", ".join(
            f'"{alias}" AS "{column.flat_name}"' for alias, column in zip(names, ROW, strict=True)
        )
        return (
            f"COPY (SELECT {columns} FROM ({sql}) rows) TO STDOUT WITH (FORMAT csv, HEADER)",
            params,
        )
    # One JSON object per line. CSV mode with a quote and a delimiter that JSON
    # text never contains raw (it escapes control characters) passes each
    # line through verbatim, where COPY's text format would escape backslashes.
    objects = ", ".join(
        f"'{column.flat_name}', \"{alias}\"" for alias, column in zip(names, ROW, strict=True)
    )
    return (
        f"COPY (SELECT json_build_object({objects}) FROM ({sql}) rows) TO STDOUT "
        "WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')",
        params,
    )


def customer_export(
    queryset: QuerySet, ordering: Ordering, fmt: str, *, timeout_ms: int
) -> Iterator[bytes]:
    """Yield the export of ``queryset`` as PostgreSQL sends it.

    It reads where the list reads (a replica when one is healthy), in a
    transaction of its own whose statement timeout is ``timeout_ms``: the
    request's limit is meant for pages, not for streaming millions of rows,
    and ``SET LOCAL`` ends with the transaction (also behind a pooler that
    hands the server connection to another client afterwards).
    """
    sql, params = customer_export_sql(queryset, ordering, fmt)
    alias = read_alias()
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(timeout_ms)])
        # Django's debug cursor (DEBUG on) takes no parameters for COPY:
        # use psycopg's own cursor underneath.
        with cursor.cursor.copy(sql, params) as copy:
            for block in metrics.export_rows(copy, fmt, header=fmt == "csv"):
                yield bytes(block)
