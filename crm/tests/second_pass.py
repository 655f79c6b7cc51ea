"""Which tests CI runs a second time, on PostgreSQL 15 (``.ci/run``'s second pass).

The first pass (``make test``) runs every test on the embedded PostgreSQL 18.
The second runs again only what can behave differently on another version of
the server: the tests that send SQL to the tests' database. The rule, applied
to every collected test by the root conftest (which marks the chosen ones
``postgres_version_sensitive``; the second pass is ``-m
postgres_version_sensitive``):

1. A test that uses pytest-django's database (the ``django_db`` mark, or the
   ``db``, ``transactional_db`` or ``live_server`` fixture, itself or through
   any fixture it uses) is chosen. pytest-django refuses every other test a
   database connection, so no other test sends SQL through Django.
2. Except a test whose subject is a program in front of Django: it drives
   nginx or Chromium (``programs("nginx")``, the ``browser`` mark). The
   statements its requests send are the in-process tests' statements, which
   the second pass runs; what it adds (headers, limits, slow clients, pages)
   is the same on either server. A test that drives PgBouncer stays chosen:
   PgBouncer speaks PostgreSQL's protocol to the server.
3. Except a test marked ``embedded_server``: it starts embedded PostgreSQL 18
   servers of its own, whatever ``DATABASE_URL`` names.
4. A test marked ``sql`` by hand is always chosen (unless it is also marked
   ``embedded_server``): its subject is what the server does with its
   statements, even though it drives nginx.

New tests are classified without anyone remembering: by the fixtures and
marks they already need. ``crm/tests/test_second_pass.py`` checks the rule,
and that no test reaches the tests' PostgreSQL behind pytest-django's back
(psycopg, or a child process given the tests' database) without being chosen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pytest

#: The mark the root conftest sets on the chosen tests (``-m`` selects by it).
MARK = "postgres_version_sensitive"

#: Where the root conftest keeps every collected test (before ``-m`` deselects).
COLLECTED = pytest.StashKey[list]()

#: The mark that chooses a test by hand (rule 4).
SQL_MARK = "sql"

#: pytest-django's fixtures that give a test the database (``_django_db_helper``
#: is the one all of them, and the ``django_db`` mark, go through).
DATABASE_FIXTURES = frozenset(
    {
        "_django_db_helper",
        "db",
        "transactional_db",
        "django_db_reset_sequences",
        "django_db_serialized_rollback",
        "live_server",
    }
)

#: Programs in front of Django (``needs_programs``), whose tests' subject is
#: the program, not the SQL behind it (rule 2).
FRONT_PROGRAMS = frozenset({"nginx", "chromium"})

#: Programs that speak PostgreSQL's protocol to the server: a test driving
#: one stays chosen.
POSTGRES_PROGRAMS = frozenset({"pgbouncer", "psql", "pg_dump", "pg_restore"})


def uses_tests_database(fixturenames: Iterable[str], marks: Mapping[str, Sequence]) -> bool:
    """Rule 1: the test has pytest-django's database (or says it sends SQL)."""
    return (
        "django_db" in marks or SQL_MARK in marks or not DATABASE_FIXTURES.isdisjoint(fixturenames)
    )


def choose(fixturenames: Iterable[str], marks: Mapping[str, Sequence]) -> tuple[bool, str]:
    """Whether the second pass runs a test, and why: ``marks`` maps each mark
    on the test to its arguments (``{"programs": ("nginx",)}``)."""
    if "embedded_server" in marks:
        return False, "starts embedded servers of its own"
    if SQL_MARK in marks:
        return True, f"marked {SQL_MARK}"
    if not uses_tests_database(fixturenames, marks):
        return False, "sends no SQL to the tests' database"
    programs = set(marks.get("programs", ()))
    if "browser" in marks:
        programs.add("chromium")
    if programs & FRONT_PROGRAMS and not programs & POSTGRES_PROGRAMS:
        front = ", ".join(sorted(programs & FRONT_PROGRAMS))
        return False, f"its subject is {front}, in front of the SQL the other tests send"
    return True, "sends SQL to the tests' database"


def marks_of(item) -> dict[str, tuple]:
    """A collected test's marks (its own, its class's, its module's), with
    every ``programs`` mark's arguments together."""
    marks: dict[str, tuple] = {}
    for mark in item.iter_markers():
        marks[mark.name] = marks.get(mark.name, ()) + tuple(mark.args)
    return marks


def choose_item(item) -> tuple[bool, str]:
    return choose(getattr(item, "fixturenames", ()), marks_of(item))
