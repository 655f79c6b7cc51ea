"""Each user's share of one machine's worker time: requests priced by what they cost.

The per-user cap on concurrent requests (``CRM_USER_CONCURRENCY``) counts
requests, not their cost: within it, a user running deep pages, phone
patterns and four-word searches from two connections kept two workers and
both cores busy, and another user's median went from 9.6 to 34-48 ms. Here
every request a user is served is charged the time it held its worker
(wall-clock, from the view's start to its rendered response: its SQL, its
Python, its waits), and a user may take ``CRM_USER_WORKER_MS`` milliseconds
of it per second, on average. Cheap requests never come near it (a hundred
first pages a second take half a worker); a user whose requests are
expensive is held to that share, and gets 429s with ``Retry-After`` for the
rest, while everyone else keeps the other workers and cores.

The budget is a GCRA (the token bucket's one-timestamp form, as the admin's
sign-ins, :mod:`core.security.admin_login`): a theoretical arrival time per
user, moved ``cost / share`` seconds on by each request. While it lies more
than :data:`SERIAL_SECONDS` ahead (the user has been taking more than its
share), the user's requests are served one at a time; more than
:data:`BURST_SECONDS` ahead, they are refused. One at a time first, because
a user refused and let through in turn still ran two heavy requests at once
whenever it was let through, and the other users met both cores busy half
the time. It is kept per
machine, as the worker slots are (worker time is a machine's), in an 8-byte
file per user beside the slots' lock files, under ``flock``: no query, a
few microseconds a request. Exports are not charged: they hold their own
slots, for as long as their client reads (:mod:`core.security.export_slots`).
"""

from __future__ import annotations

import fcntl
import os
import struct
import time
from pathlib import Path

from .local_slots import slots_dir

#: How far ahead a user's budget may run before its requests are refused: ten
#: seconds of its share (at one worker's share, ten seconds of worker time).
BURST_SECONDS = 10.0

#: How far ahead before its requests are served one at a time: a second of
#: its share. Cheap requests never get there (a hundred first pages a second
#: take half a worker's time); one slow page alone does not either, but two
#: connections of heavy ones do within a second or two.
SERIAL_SECONDS = 1.0

#: The theoretical arrival time, in seconds of CLOCK_MONOTONIC (one clock for
#: every process of the machine).
_TIME = struct.Struct("d")


def _path(user_id: int) -> Path:
    return slots_dir() / f"worker-time-{user_id}"


def _read(fd: int) -> float:
    data = os.pread(fd, _TIME.size, 0)
    return _TIME.unpack(data)[0] if len(data) == _TIME.size else 0.0


def ahead(user_id: int) -> float:
    """Seconds the user's budget runs ahead of now (0 or less: within its share)."""
    try:
        fd = os.open(_path(user_id), os.O_RDONLY)
    except FileNotFoundError:
        return 0.0
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        return _read(fd) - time.monotonic()
    finally:
        os.close(fd)


def charge(user_id: int, seconds: float, share_ms: int) -> None:
    """Count ``seconds`` of worker time against a user whose share is
    ``share_ms`` milliseconds per second."""
    fd = os.open(_path(user_id), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        arrival = max(_read(fd), time.monotonic()) + seconds * 1000 / share_ms
        os.pwrite(fd, _TIME.pack(arrival), 0)
    finally:
        os.close(fd)
