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
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError
from django.db import connection

#: Where published figures live (tracked by git, linked from the README).
PUBLISHED_DIR = Path(settings.BASE_DIR) / "docs" / "benchmarks"

#: Folders this process has already noted in their runs.log.
_noted: set[Path] = set()

#: The clean commit this process opened a published folder at (None: it has
#: not). From then on every commit it reads, and every file it writes into
#: PUBLISHED_DIR, must be that one.
_publishing: str | None = None


class DirtyPublication(CommandError):
    """A published file would name, or come from, code that is not that commit."""


def reports_dir(output: Path | str | None = None) -> Path:
    """Where a run's records go: ``output`` when given, else ``CRM_REPORTS_DIR``.

    Created on first use. A folder inside :data:`PUBLISHED_DIR` is refused
    while the code is uncommitted (its rows would name a ``-dirty`` commit
    nobody can check out); the first call for a folder notes the run in its
    ``runs.log``. Opening a published folder is only the first check: see
    :func:`_check_published_write`.
    """
    global _publishing
    path = Path(output if output is not None else settings.CRM_REPORTS_DIR).resolve()
    if _inside_published(str(path)):
        _publishing = require_clean(git_commit(), path)
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


def require_clean(commit: str, path: Path | str) -> str:
    """``commit``, if files written into ``path`` (published) may name it.

    Refused when the checkout has uncommitted changes or no commit, and when it
    is not the commit this process opened its published folder at (a commit
    made during a run: the run's code is the earlier one, its runs.log says so).
    """
    if commit.endswith("-dirty") or commit == "unknown":
        raise DirtyPublication(
            f"refusing to publish into {path} from commit {commit}: commit your changes "
            "first, so that the published figures name the code that made them "
            "(or leave --output/CRM_REPORTS_DIR unset to write to reports/)"
        )
    if _publishing is not None and commit != _publishing:
        raise DirtyPublication(
            f"refusing to publish into {path}: the checkout moved from {_publishing} to "
            f"{commit} during the run; run it again on one commit"
        )
    return commit


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
    must not make the next one (of the same commit) look dirty. While this
    process publishes, it raises instead of answering anything but the clean
    commit it opened the folder at: a report reads the commit when it writes
    it, and must never name a ``-dirty`` one.
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
        commit, changed = "unknown", ""
    commit = f"{commit}-dirty" if changed else commit
    if _publishing is not None:
        require_clean(commit, PUBLISHED_DIR)
    return commit


# -- every write into the published folder, checked when it happens -------------
#
# The folder is checked when a command opens it, but a run takes minutes to
# hours and its files are written at the end, by code spread over the
# benchmarks (CSV rows, Markdown, charts, EXPLAIN plans, each written its own
# way). An audit hook (PEP 578) sees every file this process opens for
# writing, whoever opens it, and refuses one inside PUBLISHED_DIR unless the
# checkout is still clean, at the commit the folder was opened at.

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_in_check = threading.local()


#: The published folder's guide (its README.md): prose, and tables that
#: ``readme_tables`` makes from the files beside it. It names no run's commit
#: of its own, so writing it is not publishing, and a checkout with
#: uncommitted prose may rewrite it.
GUIDE = "README.md"


def _is_guide(path: str) -> bool:
    folder, name = os.path.split(path)
    return name == GUIDE and folder in {
        os.path.abspath(PUBLISHED_DIR),
        os.path.realpath(PUBLISHED_DIR),
    }


def _inside_published(path: str) -> bool:
    """Whether ``path`` (absolute) is in PUBLISHED_DIR, reached through a symlink or not."""
    return any(
        path == published or path.startswith(published + os.sep)
        for published in {os.path.abspath(PUBLISHED_DIR), os.path.realpath(PUBLISHED_DIR)}
    )


def _check_published_write(event: str, args: tuple) -> None:
    if event != "open" or getattr(_in_check, "active", False):
        return
    path, mode, flags = args
    if isinstance(path, int) or path is None:
        return
    writes = any(c in mode for c in "wax+") if isinstance(mode, str) else flags & _WRITE_FLAGS
    if not writes:
        return
    target = os.path.abspath(os.fsdecode(os.fspath(path)))
    if not _inside_published(target) or _is_guide(target):
        return
    _in_check.active = True
    try:
        require_clean(git_commit(), target)
    finally:
        _in_check.active = False


sys.addaudithook(_check_published_write)


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
    """Append ``row``; write the header first when the file is new.

    A file written by an older version, whose header names other columns, is
    kept beside it (``<name>.<n>.csv``) and a new one started: rows appended
    under a header that does not describe them would be read wrongly.
    """
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with path.open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        if header != list(columns):
            number = 1
            while (kept := path.with_suffix(f".{number}{path.suffix}")).exists():
                number += 1
            path.rename(kept)
            new = True
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="raise")
        if new:
            writer.writeheader()
        writer.writerow(row)
