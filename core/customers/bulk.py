"""Changing every customer a list query finds, at once: one transaction, set-based.

"Give every customer in Vienna with more than 1,000 points 100 more" is one
request: the matches are the list's (:class:`core.customers.selectors.CustomerQuery`,
any filter and search), their rows are locked as a single write locks one
(``FOR UPDATE``, in id order), and the change is written by the import's
merge (:mod:`core.customers.imports.merge`): the matches are staged with
their new values, the fields the change names or increments, their current
ones for the rest (read after the locks, so that a concurrent write of
another field is kept), and every customer that changes is updated where it
differs, an address shared with someone outside the change copied first,
in a handful of statements however many match.

Above :data:`confirm_over` matches a change must say how many it expects to
change (``confirm``): a filter typed wrong cannot silently rewrite millions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction

from crm.postgres.transaction_settings import set_local

from .imports import DRY_RUN_CHANGES, merge
from .imports.fields import WRITABLE
from .imports.reading import STAGING, create_staging
from .selectors import CustomerQuery

#: Fields a change of many customers may not set: each is one customer's own.
UNIQUE_FIELDS = ("customer_id", "email")


class ConfirmationNeeded(Exception):
    """Too many matches for an unconfirmed change, or a confirmation of
    another number than there are: ``matched`` says how many there are."""

    def __init__(self, matched: int, given: int | None) -> None:
        super().__init__(matched)
        self.matched, self.given = matched, given


@dataclass
class BulkResult:
    matched: int
    updated: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)
    written: bool = False

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"matched": self.matched, "updated": self.updated}
        if not self.written:
            body["written"] = False
            body["changes"] = self.changes
        return body


def customers_bulk_update(
    query: CustomerQuery,
    *,
    values: Mapping[str, Any],
    increments: Mapping[str, int],
    confirm: int | None,
    confirm_over: int,
    dry_run: bool = False,
    timeout_ms: int | None = None,
) -> BulkResult:
    """Set ``values`` (fields by dotted name: ``address.street``) and add
    ``increments`` (``relationship.points``) for every customer of ``query``,
    in one transaction. Raises :class:`ConfirmationNeeded` when more than
    ``confirm_over`` match and ``confirm`` is not their number."""
    with transaction.atomic(), connection.cursor() as cursor:
        if timeout_ms is not None:
            set_local(cursor, {"statement_timeout": str(timeout_ms)})
        matches_sql, params = query.matches().order_by().values("id").query.sql_with_params()
        # The same row locks as a single write's, in one order (no deadlock
        # between two changes of many): a concurrent write of one of them
        # commits first, or waits for this one.
        cursor.execute(
            f"SELECT count(*) FROM (SELECT id FROM core_appuser WHERE id IN ({matches_sql}) "
            "ORDER BY id FOR UPDATE) locked",
            params,
        )
        (matched,) = cursor.fetchone()
        if not dry_run and matched > confirm_over and confirm != matched:
            raise ConfirmationNeeded(matched, confirm)
        create_staging(cursor)
        _stage(cursor, matches_sql, params, values, increments)
        merge.compare(cursor)
        _, updated, _ = merge.counts(cursor)
        result = BulkResult(matched, updated)
        if dry_run:
            result.changes = merge.changes(cursor, DRY_RUN_CHANGES)
            transaction.set_rollback(True)
            return result
        merge.write(cursor)
        result.written = True
        return result


def _stage(cursor, matches_sql: str, params: list, values, increments) -> None:
    """Each match's row as an import's would be: its new values, its current
    ones for the rest (as text, as an import's cells are)."""
    cells, cell_params = [], []
    for f in WRITABLE:
        current = f"l.{f.column.column}::text"
        if f.name in increments:
            cells.append(f"(l.{f.column.column} + %s)::text")
            cell_params.append(increments[f.name])
        elif f.name in values:
            cells.append("%s::text" if values[f.name] is not None else "NULL")
            if values[f.name] is not None:
                cell_params.append(str(values[f.name]))
        else:
            cells.append(current)
    columns = ", ".join(f'"{f.staged}"' for f in WRITABLE)
    cursor.execute(
        f"INSERT INTO {STAGING} (line, match_id, {columns}) "
        f"SELECT row_number() OVER (ORDER BY l.id) + 1, l.id, {', '.join(cells)} "
        f"FROM core_customer_list l WHERE l.id IN ({matches_sql})",
        [*cell_params, *params],
    )
