"""Every matching customer, streamed by PostgreSQL's ``COPY … TO STDOUT``.

PostgreSQL renders the rows itself and psycopg hands the bytes through: no
Python object per row, constant memory whatever the row count. The row is the
list's (:data:`core.customers.columns.ROW`), in three formats:

* ``csv``: flattened (``address_city``), with a header, every field quoted;
  a text cell that a spreadsheet would run as a formula (one starting with
  ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) gets a leading
  ``'`` (OWASP's advice against CSV injection), so such cells are not the
  exact value;
* ``ndjson``: one JSON object per line, nested exactly as the API's rows,
  values exact;
* ``json``: one document, ``{"results": [rows…], "count": n}`` (what a
  client asking for ``application/json`` gets).

A cut export can be told from a complete one. The response is chunked
(no length is known in advance), and a stream that breaks (the database
stops, the statement timeout cancels the COPY, a worker is killed) ends
without HTTP's final empty chunk, which HTTP clients report as an error
(curl exits with 18, Python's http.client raises IncompleteRead). So the CSV
is the header and exactly the rows, nothing else: a trailer line of its own
was read as one more row by ``csv.reader``, pandas and spreadsheets. NDJSON
also ends with a JSON object that gives the row count (see :data:`TRAILERS`;
no newline after it, so ``wc -l`` still counts the rows), which a reader
skips by its key, and a JSON document only parses once complete.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack

from django.db import connections, models, transaction

from core.models import CustomerRow
from crm.observability import metrics
from crm.postgres.transaction_settings import set_local
from crm.replicas import read_alias

from .columns import GROUPS, OPTIONAL_GROUPS, ROW, Column
from .selectors import CustomerQuery

#: Download formats, the default first.
FORMATS = ("csv", "ndjson", "json")

#: First characters that make a spreadsheet evaluate a cell (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: Their codes, as SQL's ``ascii()`` reads a text's first character.
FORMULA_CODES = ", ".join(str(ord(c)) for c in FORMULA_STARTS)

#: What ends a complete export, given its row count (CSV: nothing, see above).
TRAILERS: dict[str, Callable[[int], bytes]] = {
    "csv": lambda rows: b"",
    "ndjson": lambda rows: b'{"end_of_export": {"rows": %d}}' % rows,
    "json": lambda rows: b'], "count": %d}\n' % rows,
}


def _is_text(column: Column) -> bool:
    """Whether the column holds free text (a name, a street), as opposed to
    numbers, dates and timestamps, which cannot start a formula."""
    return isinstance(CustomerRow._meta.get_field(column.column), models.CharField)


def _csv_cell(alias: str, column: Column) -> str:
    """The CSV cell of one column: text that could start a formula gets a leading ``'``.

    ``ascii()`` reads the first character's code in place, where ``left(col,
    1) IN (…)`` makes a new text per cell (measured: 22 against 28 s for the
    3M-row COPY alone).
    """
    if not _is_text(column):
        return f'"{alias}"'
    codes = ", ".join(str(ord(c)) for c in FORMULA_STARTS)
    cell = f'"{alias}"'
    return f"CASE WHEN ascii({cell}) IN ({codes}) THEN '''' || {cell} ELSE {cell} END"


def _json_object(aliases: dict[Column, str]) -> str:
    """``json_build_object(…)`` of a row, nested as :func:`core.customers.columns.customer_rows`
    nests it (an optional group is null when its marker column is)."""

    def build(group: str | None) -> str:
        pairs = ", ".join(f"'{c.name}', \"{aliases[c]}\"" for c in ROW if c.group == group)
        return f"json_build_object({pairs}"

    parts = [build(None)]
    for group in GROUPS:
        value = build(group) + ")"
        marker = OPTIONAL_GROUPS.get(group)
        if marker is not None:
            column = next(c for c in ROW if c.group == group and c.name == marker)
            value = f'CASE WHEN "{aliases[column]}" IS NULL THEN NULL ELSE {value} END'
        parts.append(f"'{group}', {value}")
    return ", ".join(parts) + ")"


def customer_export_sql(query: CustomerQuery, fmt: str) -> tuple[str, list]:
    """The ``COPY … TO STDOUT`` statement that streams every matching row as ``fmt``.

    Every match is read, so there is no plan to choose: PostgreSQL's own
    planner reads them (see :meth:`CustomerQuery.matches`)."""
    aliases = {column: f"_x_{column.flat_name}" for column in ROW}
    rows = query.matches().annotate(
        **{alias: column.expression() for column, alias in aliases.items()}
    )
    sql, params = rows.values_list(*aliases.values()).query.sql_with_params()
    if fmt == "csv":
        cells = ", ".join(f'{_csv_cell(a, c)} AS "{c.flat_name}"' for c, a in aliases.items())
        return (
            f"COPY (SELECT {cells} FROM ({sql}) rows) TO STDOUT "
            "WITH (FORMAT csv, HEADER, FORCE_QUOTE *)",
            params,
        )
    # One JSON object per line. CSV mode with a quote and a delimiter that JSON
    # text never contains raw (it escapes control characters) passes each
    # line through verbatim, where COPY's text format would escape backslashes.
    return (
        f"COPY (SELECT {_json_object(aliases)} FROM ({sql}) rows) TO STDOUT "
        "WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')",
        params,
    )


def _json_array(lines: Iterator[bytes]) -> Iterator[bytes]:
    """NDJSON lines as the elements of ``{"results": [`` … (the trailer closes it).

    Each line's newline becomes ``,\\n``; the last two bytes are held back so
    that the last row loses its comma. JSON escapes newlines inside strings,
    so every raw newline ends a row.
    """
    yield b'{"results": [\n'
    held = b""
    for block in lines:
        data = held + block.replace(b"\n", b",\n")
        held = data[-2:]
        yield data[:-2]
    if held:
        yield held[:-2] + b"\n"


class ExportStream:
    """The bytes of a started export; ends its transaction (and whatever
    else it holds) when exhausted, when it fails, or when closed early.

    Django's ``StreamingHttpResponse`` calls :meth:`close` when the response
    is done with, also when the client went away mid-stream: the COPY is then
    cancelled (psycopg cancels a COPY left by an exception) and the
    connection is clean for the worker's next request.
    """

    def __init__(self, blocks: Iterator[bytes], resources: ExitStack) -> None:
        self._resources = resources
        self._blocks = self._guarded(blocks)

    def _guarded(self, blocks: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from blocks
        except BaseException:
            if not self._resources.__exit__(*sys.exc_info()):
                raise
        else:
            self._resources.close()

    def __iter__(self) -> Iterator[bytes]:
        return self._blocks

    def close(self) -> None:
        self._blocks.close()
        self._resources.close()


class CustomerExport:
    """One export of a list query: its statement, where it reads, and its limits.

    It reads where the list reads (a replica when one is healthy), in a
    transaction of its own whose statement timeout is ``timeout_ms``: the
    request's limit is meant for pages, not for streaming millions of rows,
    and ``SET LOCAL`` ends with the transaction (also behind a pooler that
    hands the server connection to another client afterwards). ``guard`` is
    held for as long as the export runs (a per-user slot, say).
    """

    def __init__(
        self,
        query: CustomerQuery,
        fmt: str,
        *,
        timeout_ms: int,
        guard: AbstractContextManager | None = None,
    ) -> None:
        self.format = fmt
        self.sql, self.params = customer_export_sql(query, fmt)
        self.timeout_ms = timeout_ms
        self.guard = guard
        # Chosen before the guard opens anything on the primary: a transaction
        # open there pins every read of this thread to the primary.
        self.using = read_alias()

    def start(self) -> ExportStream:
        """Take the guard, open the transaction and start the COPY.

        Everything that can fail before the first row fails here, before a
        byte of the response is sent, so that the client gets a proper error
        (a JSON 503 when the database is down, a 429 from the guard) rather
        than a 200 that breaks off.
        """
        with ExitStack() as stack:
            if self.guard is not None:
                stack.enter_context(self.guard)
            stack.enter_context(transaction.atomic(using=self.using))
            cursor = stack.enter_context(connections[self.using].cursor())
            set_local(cursor, {"statement_timeout": str(self.timeout_ms)})
            # Django's debug cursor (DEBUG on) takes no parameters for COPY:
            # use psycopg's own cursor underneath.
            raw = cursor.cursor
            copy = stack.enter_context(raw.copy(self.sql, self.params))
            return ExportStream(self._bytes(copy, raw), stack.pop_all())

    def _bytes(self, copy, raw) -> Iterator[bytes]:
        # One block per row (and the CSV header), counted for the metrics.
        blocks = metrics.export_rows(
            (bytes(block) for block in copy), self.format, header=self.format == "csv"
        )
        yield from _json_array(blocks) if self.format == "json" else blocks
        # Reached only when PostgreSQL has sent every row: rowcount is COPY's count.
        if trailer := TRAILERS[self.format](raw.rowcount):
            yield trailer
