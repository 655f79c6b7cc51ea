"""Importing customers from a file: new ones created, known ones updated, at COPY speed.

The file is a CSV as ``/api/users/export/`` writes it (its header names the
columns, in any order) or NDJSON (one customer per line, nested as the
API's rows; the export's closing ``{"end_of_export": …}`` line is skipped).
Each row is matched to a customer by ``customer_id`` (or, where that cell is
empty, by ``email``; ``match="email"`` matches by e-mail address only):

* a row nobody matches creates a customer with their address and loyalty record;
* a matched row changes only the fields that differ (``last_updated`` moves;
  an address someone else shares is copied first, as the API does);
* a row that changes nothing writes nothing: no event in the history, no
  read row rewritten.

Why not django-import-export, the ecosystem's importer: it validates and
saves row by row through the ORM, a few milliseconds a row, an hour for a
million. Here, in one transaction:

1. **Staging** (:mod:`.reading`): the CSV passes through to ``COPY … FORMAT
   csv`` (PostgreSQL parses it, and names a malformed line); NDJSON is
   parsed here a line at a time. Memory stays flat whatever the file's size.
   Then one pass (:func:`.merge.prepare`) reads each row as the API would,
   finds its customer, and notes what the rules below must look at and which
   tables it changes: at a million rows each pass costs seconds.
2. **Validation** (:mod:`.validation`): every rule of the API's write
   serializer as SQL over all rows at once, the serializer itself on the
   rows the SQL flags; and what only a file can get wrong (a spreadsheet
   formula, a customer twice, an e-mail address someone else holds).
3. **Merge** (:mod:`.merge`): a handful of set-based statements, each over
   the rows that change its table; the read table's triggers and the
   history's follow, with the import's context (source ``import``, its id)
   set by the caller (:func:`core.history.context.writing_as`).

By default nothing is written when any row is invalid; ``skip_invalid``
writes the others; ``dry_run`` writes nothing and says what would change.

A CSV cell the export neutralised against spreadsheet formulas (``'+43 1 …``)
is read without its ``'``; a cell a spreadsheet would run as a formula
(``=``, ``@``, a tab or a carriage return first, or ``+`` or ``-`` first in
anything but a phone number) is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from django.db import connection, transaction

from crm.postgres.transaction_settings import set_local

from . import merge, validation
from .reading import STAGING, UnreadableFile, create_staging, error, stage
from .validation import RowValidator

__all__ = ["ImportResult", "RowValidator", "UnreadableFile", "customer_import"]

#: Errors an answer lists at most (it says how many more there were).
MAX_ERRORS = 1_000
#: Changes a dry run shows, field by field.
DRY_RUN_CHANGES = 20
#: How an import matches rows to customers.
MATCHES = ("customer_id", "email")


@dataclass
class ImportResult:
    """What an import did, or (not ``written``) would do."""

    import_id: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    errors_not_shown: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)
    written: bool = False

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "import_id": self.import_id,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "invalid": self.invalid,
            "errors": self.errors,
        }
        if self.errors_not_shown:
            body["errors_not_shown"] = self.errors_not_shown
        if not self.written:
            body["written"] = False
            body["changes"] = self.changes
        return body


def customer_import(
    stream: IO[bytes],
    *,
    validate_row: RowValidator,
    match: str = "customer_id",
    skip_invalid: bool = False,
    dry_run: bool = False,
    timeout_ms: int | None = None,
    import_id: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ImportResult:
    """Import the file ``stream`` (see the module docstring), in one transaction.

    Raises :class:`UnreadableFile` for a file that cannot be read at all (a
    wrong header, UTF-16, a malformed CSV line); invalid rows are in the
    result (``invalid``, ``errors``), and then, unless ``skip_invalid``,
    nothing is written. ``progress`` is told each step as it starts."""
    say = progress or (lambda step: None)
    if match not in MATCHES:
        raise ValueError(f"match must be one of {MATCHES}")
    result = ImportResult(import_id or uuid.uuid4().hex)
    with transaction.atomic(), connection.cursor() as cursor:
        if timeout_ms is not None:
            set_local(cursor, {"statement_timeout": str(timeout_ms)})
        create_staging(cursor)
        say("reading the file")
        fmt, unread = stage(cursor, stream)
        say("validating every row")
        problems = [(e["line"], e["field"], e["message"]) for e in unread]
        merge.prepare(cursor, match, neutralised=fmt == "csv")
        problems += validation.formula_errors(cursor)
        problems += validation.file_errors(cursor, match)
        problems += validation.validate(cursor, validate_row)
        bad = sorted({line for line, _, _ in problems})
        if bad:
            cursor.execute(f"UPDATE {STAGING} SET invalid = true WHERE line = ANY(%s)", [bad])
        # The rows the serializer cleaned: compared now, with their clean values.
        merge.compare(cursor, rows="s.suspect")
        result.created, result.updated, result.unchanged = merge.counts(cursor)
        result.invalid = len(bad)
        ordered = sorted(problems, key=lambda p: (p[0] or 0, p[1] or ""))
        result.errors = [error(*p) for p in ordered[:MAX_ERRORS]]
        result.errors_not_shown = max(0, len(ordered) - MAX_ERRORS)
        if dry_run or (bad and not skip_invalid):
            say("nothing written")
            result.changes = merge.changes(cursor, DRY_RUN_CHANGES)
            transaction.set_rollback(True)
            return result
        say(f"writing: {result.created:,} new, {result.updated:,} changed")
        merge.write(cursor)
        result.written = True
    return result
