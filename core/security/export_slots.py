"""How many exports may stream at once, and how many a user may start in an hour.

An export holds a worker, a database connection and a transaction for as
long as its client reads: the proxy does not buffer it (``X-Accel-Buffering:
no``, see :class:`core.security.views.ProtectedApiView`), because a proxy
that reads it all at once frees the worker but keeps the file (0.65-1.6 GB at
3M customers) on its disk for a client who may never read it, and the limits
here would bound nothing. So, end to end:

* each user has ``CRM_EXPORT_CONCURRENCY`` slots across all workers and
  machines (advisory locks on the primary);
* each machine streams at most ``CRM_EXPORT_TOTAL`` exports at once (by
  default one fewer than its workers, so that one is always left for the
  rest of the API: :mod:`core.security.local_slots`), and at most one fewer
  than that for one user (one export slot is always left for the others:
  one user reading two exports slowly held every export slot, and two of
  three workers, for ten minutes);
* each user may start ``CRM_THROTTLE_EXPORT`` exports an hour.

An export beyond any of them is refused with a 429 and ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connections, transaction
from rest_framework.exceptions import Throttled

from crm.observability import metrics
from crm.replicas import PRIMARY

from . import local_slots
from .throttling import client_key, counter, rate_of

#: The first key of the slots' advisory locks ("crx\0" in ASCII); slot n of a
#: user is the lock (EXPORT_LOCK_CLASS + n, user id), as pg_locks shows it.
EXPORT_LOCK_CLASS = 0x63727800

#: What the 429 tells a client to wait before trying again, in seconds.
RETRY_AFTER_SECONDS = 10


class ExportsBusy(Throttled):
    """Every export slot the request could take is held: try again shortly."""

    default_detail = "Too many exports under way."

    def __init__(self, detail: str) -> None:
        super().__init__(wait=RETRY_AFTER_SECONDS, detail=detail)


def _exports(count: int) -> str:
    return f"{count} export{'s' if count != 1 else ''}"


@contextmanager
def export_slot(user_id: int, limit: int) -> Iterator[int]:
    """Hold one of the machine's export slots and one of the user's ``limit``
    (yields the user's slot number), and count the export against the user's
    hourly budget; or raise :class:`ExportsBusy` or DRF's ``Throttled``.

    A user's slot is a transaction-level advisory lock on the primary. All
    workers share the primary (replicas have locks of their own), and the
    lock ends with its transaction: a worker that dies, a connection that
    breaks or a pooler in transaction mode (which hands the server connection
    to others between transactions) cannot leak it, as a session-level lock
    could. The machine's slot is a file lock, which the kernel releases with
    its process.
    """
    total = settings.CRM_EXPORT_TOTAL
    mine = per_user_on_one_machine(total)
    own = local_slots.take(f"exports-user-{user_id}", mine) if mine else local_slots.NO_SLOT
    if own is None:
        metrics.throttle_rejected("export")
        raise ExportsBusy(
            f"{_exports(mine)} of yours already under way on this server, the most it "
            "streams for one user at once; try again when one has finished."
        )
    machine = local_slots.take("exports", total) if total else local_slots.NO_SLOT
    if machine is None:
        own.release()
        metrics.throttle_rejected("export")
        raise ExportsBusy(
            f"This server is streaming {_exports(total)}, the most it streams at once; "
            "try again shortly."
        )
    try:
        # Counted before the slot's transaction, which lasts as long as the
        # export: a count written inside it would keep its row locked that long.
        spend_export_budget(user_id)
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
                    metrics.throttle_rejected("export")
                    raise ExportsBusy(
                        f"{_exports(limit)} of yours already under way, the most allowed "
                        "at once; try again when one has finished."
                    )
            yield slot
    finally:
        machine.release()
        own.release()


def per_user_on_one_machine(total: int) -> int:
    """How many of a machine's ``total`` export slots one user may hold: all
    but one, so that another user can always start an export (one, when the
    machine streams only one at a time; 0, no cap, when ``total`` is)."""
    return max(1, total - 1) if total else 0


def spend_export_budget(user_id: int) -> None:
    """Count an export about to start (refused ones too, as every rate limit
    here counts them); refuse it past ``CRM_THROTTLE_EXPORT``."""
    rate = rate_of("export")
    if rate is None:
        return
    wait = counter().hit(client_key("export", str(user_id)), rate)
    if wait is not None:
        metrics.throttle_rejected("export")
        raise Throttled(
            wait=wait,
            detail=f"You have started {rate.requests} exports in the last window, "
            "the most allowed; try again later.",
        )
