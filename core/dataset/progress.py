"""Progress of long work: a bar on a terminal, plain lines in a log, or silence.

Services report phases and amounts to a :class:`Progress`; the management
command decides how to show them.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm


class Progress:
    """Silent progress: the interface, and what ``--quiet`` uses."""

    def phase(self, name: str, total: int, unit: str = "rows") -> None:
        """Start a phase of ``total`` units."""

    def advance(self, amount: int = 1) -> None:
        """``amount`` more units of the current phase are done."""

    def close(self) -> None:
        """The work is over (or failed): release the terminal."""


class TerminalProgress(Progress):
    """A tqdm bar per phase: rate, ETA and the phase's name."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.bar: tqdm | None = None

    def phase(self, name: str, total: int, unit: str = "rows") -> None:
        self.close()
        self.bar = tqdm(
            total=total, desc=f"{name:>8}", unit=f" {unit}", unit_scale=True, file=self.stream
        )

    def advance(self, amount: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(amount)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LogProgress(Progress):
    """One plain line per phase start and at most one every ``interval`` seconds."""

    def __init__(self, stream: TextIO, interval: float = 5.0) -> None:
        self.stream = stream
        self.interval = interval
        self.name = ""
        self.total = 0
        self.done = 0
        self.unit = "rows"
        self.started = self.last = time.monotonic()

    def phase(self, name: str, total: int, unit: str = "rows") -> None:
        self.name, self.total, self.unit, self.done = name, total, unit, 0
        self.started = self.last = time.monotonic()
        self._line()

    def advance(self, amount: int = 1) -> None:
        self.done += amount
        now = time.monotonic()
        if now - self.last >= self.interval or self.done >= self.total:
            self.last = now
            self._line()

    def _line(self) -> None:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        self.stream.write(
            f"{self.name}: {self.done:,}/{self.total:,} {self.unit} "
            f"({rate:,.0f} {self.unit}/s, ETA {eta:.0f} s)\n"
        )
        self.stream.flush()


def progress_for(stream: TextIO, quiet: bool) -> Progress:
    """The right reporter for ``stream``: a bar on a terminal, lines otherwise."""
    if quiet:
        return Progress()
    if stream.isatty():
        return TerminalProgress(stream)
    return LogProgress(stream)
