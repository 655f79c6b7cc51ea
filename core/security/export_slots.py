"""How many exports one user may stream at once, counted across every worker process.

An export holds a worker thread, a database connection and a transaction
for as long as its client reads (minutes for millions of rows, or for a slow
reader): a user who opens dozens at once takes the service's capacity. Each
user has ``CRM_EXPORT_CONCURRENCY`` slots; an export takes a free one or is
refused with a 429 and ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections, transaction
from rest_framework.exceptions import Throttled

from crm.replicas import PRIMARY

#: The first key of the slots' advisory locks ("crx\0" in ASCII); slot n of a
#: user is the lock (EXPORT_LOCK_CLASS + n, user id), as pg_locks shows it.
EXPORT_LOCK_CLASS = 0x63727800

#: What the 429 tells a client to wait before trying again, in seconds.
RETRY_AFTER_SECONDS = 10


class ExportsBusy(Throttled):
    default_detail = "Too many exports under way for this user."

    def __init__(self, limit: int) -> None:
        super().__init__(
            wait=RETRY_AFTER_SECONDS,
            detail=(
                f"{limit} export{'s' if limit != 1 else ''} of yours already under way, "
                f"the most allowed at once; try again when one has finished."
            ),
        )


@contextmanager
def export_slot(user_id: int, limit: int) -> Iterator[int]:
    """Hold one of the user's ``limit`` export slots (yields its number), or raise
    :class:`ExportsBusy`.

    A slot is a transaction-level advisory lock on the primary. All workers
    share the primary (replicas have locks of their own), and the lock ends
    with its transaction: a worker that dies, a connection that breaks or a
    pooler in transaction mode (which hands the server connection to others
    between transactions) cannot leak it, as a session-level lock could.
    """
    with transaction.atomic(using=PRIMARY):
        with connections[PRIMARY].cursor() as cursor:
            for slot in range(limit):
                cursor.execute(
                    "SELECT pg_try_advisory_xact_lock(%s::int4, %s::int4)",
                    [EXPORT_LOCK_CLASS + slot, user_id],
                )
                if cursor.fetchone()[0]:
                    break
            else:
                raise ExportsBusy(limit)
        yield slot
