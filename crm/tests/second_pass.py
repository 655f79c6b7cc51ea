"""Which tests CI runs a second time, on PostgreSQL 15 (``.ci/run``'s second pass).

The first pass (``make test``) runs every test on the embedded PostgreSQL 18.
The second runs again only what can behave differently on another version of
the server: the tests of the SQL the project writes itself (its own
statements, triggers, functions, ``COPY``, catalog queries, and the list's
statements, whose plans the server chooses). The ORM's ordinary statements
are Django's, which supports every version from 14 on; a test of the API,
the admin's pages or a program in front of Django makes requests whose SQL
comes from the modules these tests cover. The rule, applied to every
collected test by the root conftest (which marks the chosen ones
``postgres_version_sensitive``; the second pass is ``-m
postgres_version_sensitive``):

1. A test marked ``embedded_server`` is not chosen: it starts embedded
   PostgreSQL 18 servers of its own, whatever ``DATABASE_URL`` names.
2. A test marked ``sql`` by hand is chosen: its subject is what the server
   does with its statements, wherever it lives.
3. Otherwise a test is chosen when it uses pytest-django's database (the
   ``django_db`` mark, or the ``db``, ``transactional_db`` or ``live_server``
   fixture, itself or through any fixture it uses; pytest-django refuses
   every other test a database connection), it lives where the tests of the
   project's SQL live (:data:`SQL_SUBJECTS`), and its subject is not a
   program in front of Django (nginx or Chromium: ``programs("nginx")``,
   the ``browser`` mark; a test driving PgBouncer stays chosen, PgBouncer
   speaks PostgreSQL's protocol to the server).

New tests are classified without anyone remembering: by where they live and
the fixtures and marks they already need. ``crm/tests/test_second_pass.py``
checks the rule, that every module of the product that writes SQL of its
own has its tests among :data:`SQL_SUBJECTS`, and that no test reaches the
tests' PostgreSQL behind pytest-django's back (psycopg, or a child process
given the tests' database) without being chosen.
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

#: Where the tests of the project's own SQL live (paths from the repository's
#: root; a folder ends with ``/``), each with the SQL it is the subject of.
SQL_SUBJECTS: dict[str, str] = {
    "core/tests/customers/": "the list's statements and plans, search, COPY exports and imports, "
    "the read table's triggers under every isolation level",
    "core/tests/history/": "the history's triggers, erasure and retention",
    "core/tests/dataset/": "the loader: COPY, indexes, the swap, a load killed in any phase",
    "core/tests/test_models.py": "constraints and indexes",
    "core/tests/test_read_table_declaration.py": "the trigger functions as installed",
    "core/tests/test_folding.py": "crm_fold, the SQL function",
    "core/tests/test_admin.py": "the admin's bounded counts and lists at millions",
    "core/tests/test_run_records.py": "the benchmark runs' records",
    "core/tests/api/test_bulk_update.py": "the bulk edit's locks and set-based merge",
    "core/tests/api/test_write_races.py": "row locks and retries of racing writes",
    "core/tests/security/test_throttling.py": "the rate limits' windows (upserts)",
    "core/tests/security/test_admin_login.py": "the admin login's failure counts",
    "core/tests/security/test_export_limits.py": "the export slots' advisory locks",
    "crm/tests/test_database_config.py": "the session's settings, migrations from zero",
    "crm/tests/test_backend.py": "the database backend's connection set-up",
    "crm/tests/test_pgbouncer.py": "sessions through the pooler",
    "crm/tests/test_transaction_settings.py": "SET LOCAL with parameters, put back afterwards",
    "crm/tests/observability/test_health.py": "the probes' queries",
}


def is_sql_subject(path: str) -> bool:
    """Does the test file at ``path`` (from the repository's root) test the
    project's own SQL?"""
    return any(
        path.startswith(subject) if subject.endswith("/") else path == subject
        for subject in SQL_SUBJECTS
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


def choose(
    path: str, fixturenames: Iterable[str], marks: Mapping[str, Sequence]
) -> tuple[bool, str]:
    """Whether the second pass runs a test, and why: ``path`` is its file's
    (from the repository's root), ``marks`` maps each mark on the test to its
    arguments (``{"programs": ("nginx",)}``)."""
    if "embedded_server" in marks:
        return False, "starts embedded servers of its own"
    if SQL_MARK in marks:
        return True, f"marked {SQL_MARK}"
    if not uses_tests_database(fixturenames, marks):
        return False, "sends no SQL to the tests' database"
    if not is_sql_subject(path):
        return False, "its SQL is built by the modules the SQL subjects' tests cover"
    programs = set(marks.get("programs", ()))
    if "browser" in marks:
        programs.add("chromium")
    if programs & FRONT_PROGRAMS and not programs & POSTGRES_PROGRAMS:
        front = ", ".join(sorted(programs & FRONT_PROGRAMS))
        return False, f"its subject is {front}, in front of the SQL the other tests send"
    return True, "tests the project's own SQL"


def marks_of(item) -> dict[str, tuple]:
    """A collected test's marks (its own, its class's, its module's), with
    every ``programs`` mark's arguments together."""
    marks: dict[str, tuple] = {}
    for mark in item.iter_markers():
        marks[mark.name] = marks.get(mark.name, ()) + tuple(mark.args)
    return marks


def choose_item(item) -> tuple[bool, str]:
    path = item.nodeid.split("::")[0]
    return choose(path, getattr(item, "fixturenames", ()), marks_of(item))
