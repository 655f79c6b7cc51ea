"""Settings for one transaction: PostgreSQL's ``SET LOCAL``, with parameters.

``set_config(name, value, true)`` is ``SET LOCAL`` that takes its value as a
parameter: it ends with the transaction (a commit, a rollback, or a rollback
to the savepoint it was set after). Every limit the project sets for one
piece of work rather than a whole session (a sample read's, an export's, a
bulk edit's, an import's, a load's) is set here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping


def set_local(cursor, settings: Mapping[str, str]) -> None:
    """``SET LOCAL`` each of ``settings`` (in one statement): they end with the transaction."""
    if settings:
        cursor.execute(
            "SELECT " + ", ".join(["set_config(%s, %s, true)"] * len(settings)),
            [part for item in settings.items() for part in item],
        )


@contextlib.contextmanager
def local_settings(cursor, settings: Mapping[str, str]) -> Iterator[None]:
    """``settings`` for the enclosed statements of the caller's transaction,
    which gets its own values back afterwards (a failure inside a savepoint
    rolls them back with it; ``SET LOCAL`` alone would outlast a released
    savepoint)."""
    cursor.execute("SELECT " + ", ".join(["current_setting(%s)"] * len(settings)), list(settings))
    previous = dict(zip(settings, cursor.fetchone(), strict=True))
    set_local(cursor, settings)
    yield
    set_local(cursor, previous)
