"""Data that every test of a module reads: committed once for the module.

A replacing load costs 0.4 to 0.7 s however few its customers are (shadow
tables, their indexes and keys, ANALYZE, the swap), and a module whose
tests all start from the same generated customers paid it for each test:
about half a minute of a run of the suite for the admin's tests alone, and
again in CI's second pass. A fixture made by :func:`module_data` loads once,
before the module's first test, and commits; each test still runs in a
transaction that is rolled back after it (pytest-django's ``db``), so what
one test writes is gone for the next, as with a load of its own. After the
module's last test the tables are emptied with Django's ``flush``, as after
a transactional test, so the next module starts from an empty database.

Committed data is seen by every test of the module, and a transactional
test empties the tables after itself: so every test of the module that uses
the database must use the fixture, and none may be transactional. The
fixture checks both before it loads, and fails the module's tests otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from django.core.management import call_command

from crm.tests.second_pass import DATABASE_FIXTURES

T = TypeVar("T")

#: pytest-django's fixtures of a transactional test (its data committed, the
#: tables flushed after it).
TRANSACTIONAL_FIXTURES = frozenset({"transactional_db", "live_server", "django_db_reset_sequences"})


def module_data(load: Callable[[], T]) -> Any:
    """A module-scoped fixture: ``load()``'s data committed for the module,
    its result given to each test that asks for the fixture."""

    @pytest.fixture(scope="module")
    def committed(request, django_db_setup, django_db_blocker) -> Iterator[T]:
        module_tests_check(request, request.fixturename)
        with django_db_blocker.unblock():
            value = load()
        try:
            yield value
        finally:
            with django_db_blocker.unblock():
                call_command("flush", interactive=False, verbosity=0)

    return committed


def module_tests_check(request: pytest.FixtureRequest, name: str) -> None:
    """Fail unless every test of the module that uses the database uses ``name``,
    and none is transactional (see the module's docstring)."""
    module = request.node
    for item in request.session.items:
        if item.module is not module.obj:
            continue
        marker = item.get_closest_marker("django_db")
        uses_database = marker is not None or DATABASE_FIXTURES & set(item.fixturenames)
        if not uses_database:
            continue
        transactional = TRANSACTIONAL_FIXTURES & set(item.fixturenames) or (
            marker is not None and (marker.kwargs.get("transaction") or marker.args[:1] == (True,))
        )
        if name not in item.fixturenames or transactional:
            pytest.fail(
                f"{item.nodeid} uses the database but not the module's committed data "
                f"({name}), or is transactional: it would see that data, or flush it "
                "from under the tests after it (crm.tests.module_data)",
                pytrace=False,
            )
