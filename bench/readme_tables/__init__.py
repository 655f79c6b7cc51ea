"""The README's benchmark tables, made from the published CSV files, so that
no figure in them can drift from the run it quotes.

A table sits in a Markdown file between two comments::

    <!-- table:matrix-3m -->
    | … the table …
    <!-- /table -->

and :func:`regenerate` rewrites what is between them from the files in
``docs/benchmarks/`` (:data:`core.run_records.PUBLISHED_DIR`). ``python
manage.py readme_tables`` rewrites every file of :data:`FILES` that way (after
a run is published); ``--check`` only says whether they are current, and a
test runs it. The tables:

* ``matrix-<size>``: every ``docs/benchmarks/matrix-<size>/`` folder, one row
  per run label, the latest run of each (a new label is a new row);
* ``matrix-summary``: the last two labels of every matrix folder (before and
  after), and ``matrix-now``: the last label of each;
* ``list-targets``: the list's targets (:mod:`bench.matrix.summaries`), each
  met or not with its figure from the latest runs;
* ``bench-list``: the seed's implementation against this one and the floor
  (bench_list); ``http``, ``http-pgbouncer`` (bench_http); ``locust``;
  ``generate`` (generate_data); ``plans`` (bench_plans); ``writes``
  (bench_writes); ``history`` (bench_history).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from core import run_records

from . import matrix, runs
from .text import LINK

#: The files whose tables the command keeps, relative to the checkout.
FILES = (
    "README.md",
    "docs/list-query.md",
    "docs/benchmarks/README.md",
    "docs/database.md",
    "docs/scaling.md",
)

BLOCK = re.compile(
    r"(?P<open><!-- table:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(?P<close><!-- /table -->)",
    re.DOTALL,
)


class UnknownTable(ValueError):
    """A marker names a table this module does not make."""


def regenerate(text: str, *, where: str = ".", published: Path | None = None) -> str:
    """``text`` with every table between markers made afresh from ``published``;
    ``where`` is the folder of the file ``text`` is, relative to the checkout
    (the tables' links to ``docs/benchmarks/`` are relative to it)."""
    folder = published or run_records.PUBLISHED_DIR
    link = os.path.relpath(PUBLISHED_LINK, where)
    link = "" if link == "." else link + "/"

    def table(match: re.Match) -> str:
        lines = [line.replace(f"]({LINK}/", f"]({link}") for line in make(match["name"], folder)]
        return match["open"] + "".join(line + "\n" for line in lines) + match["close"]

    return BLOCK.sub(table, text)


#: Where the published files are, relative to the checkout.
PUBLISHED_LINK = "docs/benchmarks"


def make(name: str, published: Path) -> list[str]:
    """The lines of the table ``name``."""
    if name in TABLES:
        return TABLES[name](published)
    if name.startswith("matrix-"):
        if not (published / name).is_dir():
            return [f"No run is published in `{name}/` yet."]
        return matrix.matrix_table(published / name)
    raise UnknownTable(f"no table named {name!r} (see bench.readme_tables)")


TABLES: dict[str, Callable[[Path], list[str]]] = {
    "tunables": runs.tunables,
    "matrix-summary": matrix.matrix_summary,
    "matrix-now": matrix.matrix_now,
    "list-targets": matrix.list_targets,
    "bench-list": runs.bench_list,
    "http": lambda published: runs.http_table(published / "http"),
    "http-pgbouncer": lambda published: runs.http_table(published / "http-pgbouncer"),
    "http-before-after": lambda published: runs.http_before_after(published / "http"),
    "profile": runs.profile_table,
    "locust": runs.locust_table,
    "generate": runs.generate_table,
    "generate-now": runs.generate_now,
    "plans": runs.plans_table,
    "writes": runs.writes_table,
    "history": runs.history_table,
}
