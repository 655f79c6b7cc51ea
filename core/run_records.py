"""Records of runs (generate_data here, the benchmarks in ``bench``): CSV rows
with the facts that make two runs comparable, the commit and the server.

Two kinds of folder hold them, and they never share a path:

* a user's own runs go to ``CRM_REPORTS_DIR`` (``reports/`` in the checkout,
  ignored by git), so that ``make run``, ``make test`` and any benchmark leave
  a clone clean;
* the figures the README quotes are *published* in ``docs/benchmarks/``
  (:data:`PUBLISHED_DIR`), only when a command is pointed there on purpose
  (``--output docs/benchmarks`` or ``CRM_REPORTS_DIR=docs/benchmarks``), and
  only from a committed checkout, so that every published row names the code
  that produced it.

Each folder keeps ``runs.log``: one line per command that wrote to it, with
its commit and command line.
"""

from __future__ import annotations

import csv
import datetime as dt
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError
from django.db import connection

#: Where published figures live (tracked by git, linked from the README).
PUBLISHED_DIR = Path(settings.BASE_DIR) / "docs" / "benchmarks"

#: Folders this process has already noted in their runs.log.
_noted: set[Path] = set()


def reports_dir(output: Path | str | None = None) -> Path:
    """Where a run's records go: ``output`` when given, else ``CRM_REPORTS_DIR``.

    Created on first use. A folder inside :data:`PUBLISHED_DIR` is refused
    while the code is uncommitted (its rows would name a ``-dirty`` commit
    nobody can check out); the first call for a folder notes the run in its
    ``runs.log``.
    """
    path = Path(output if output is not None else settings.CRM_REPORTS_DIR).resolve()
    if path.is_relative_to(PUBLISHED_DIR.resolve()):
        commit = git_commit()
        if commit.endswith("-dirty") or commit == "unknown":
            raise CommandError(
                f"refusing to publish into {path} from commit {commit}: commit your changes "
                "first, so that the published figures name the code that made them "
                "(or leave --output/CRM_REPORTS_DIR unset to write to reports/)"
            )
    path.mkdir(parents=True, exist_ok=True)
    if path not in _noted:
        _noted.add(path)
        line = "\t".join(
            [
                dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                git_commit(),
                command_line(),
            ]
        )
        with (path / "runs.log").open("a", encoding="utf-8") as log:
            log.write(line + "\n")
    return path


def command_line() -> str:
    """This process's command, as a user would type it (``python manage.py …``)."""
    arguments = list(sys.argv)
    if arguments and Path(arguments[0]).name == "manage.py":
        arguments[0] = "manage.py"
        arguments.insert(0, "python")
    return shlex.join(arguments)


def git_commit() -> str:
    """The checkout's commit, with ``-dirty`` when code has uncommitted changes.

    Changes inside the published folder do not count: publishing one result
    must not make the next one (of the same commit) look dirty.
    """
    try:
        commit = _git("rev-parse", "--short=12", "HEAD")
        changed = _git(
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            f":(exclude){PUBLISHED_DIR.relative_to(settings.BASE_DIR).as_posix()}",
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if changed else commit


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout.strip()


def postgres_version() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return cursor.fetchone()[0]


def append_csv(path: Path, columns: Sequence[str], row: Mapping[str, object]) -> None:
    """Append ``row``; write the header first when the file is new."""
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="raise")
        if new:
            writer.writeheader()
        writer.writerow(row)
