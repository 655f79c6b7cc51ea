"""How the tables write what they show: commits, days, shares, sizes, verdicts."""

from __future__ import annotations

import csv
from pathlib import Path

#: How the tables' links name the published folder until
#: :func:`bench.readme_tables.regenerate` makes them relative to their file.
LINK = "@published"


def short(commit: str) -> str:
    """A commit as the tables show it: 7 hex digits (and ``-dirty`` if so)."""
    head, dirty, _ = commit.partition("-dirty")
    return f"`{head[:7]}{dirty}`"


def day(stamp: str) -> str:
    return stamp[:10]


def share(value: float) -> str:
    return f"{100 * value:.1f}%"


def customers_text(n: int) -> str:
    """3,000,000 as 3M."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n:,}"


def verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
