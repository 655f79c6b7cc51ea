"""Slots shared by the processes of one machine: at most N holders of a name at once.

gunicorn's sync workers serve one request each, so a machine's workers are
what one client, or exports as a whole, can take from everyone else. Counting
what holds them needs no database: a slot is an exclusive ``flock`` on a
small file, taken without waiting. The kernel releases it when its holder
closes the file or dies (a worker killed with SIGKILL leaks nothing), it
costs a few microseconds, and it counts the workers of this machine, which
are the ones a request would take.

The files live in a folder per gunicorn (:mod:`crm.slots_folder`: named
after the master, the workers' parent process, and removed when it exits),
so that two servers on one machine, a test stack beside ``make run`` say,
never count each other.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from crm.slots_folder import slots_folder


def slots_dir() -> Path:
    """This server's folder: one per user and parent process."""
    path = slots_folder(os.getppid())
    path.mkdir(mode=0o700, exist_ok=True)
    return path


class Slot:
    """A held slot; :meth:`release` (or the process's end) frees it."""

    def __init__(self, fd: int | None) -> None:
        self.fd: int | None = fd

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)  # the lock goes with its file description

    def __del__(self) -> None:
        self.release()


#: What holds nothing (a limit that is off).
NO_SLOT = Slot(None)


def take(name: str, limit: int) -> Slot | None:
    """One of ``limit`` slots of ``name``, or None when all are held."""
    directory = slots_dir()
    for number in range(limit):
        fd = os.open(directory / f"{name}.{number}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return Slot(fd)
    return None
