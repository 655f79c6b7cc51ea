"""Settings for one transaction (crm.postgres.transaction_settings), on a real server."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from crm.postgres.transaction_settings import local_settings, set_local

pytestmark = pytest.mark.django_db


def current(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_settings_set_locally_end_with_the_transaction():
    before = current("statement_timeout"), current("lock_timeout")
    with transaction.atomic(), connection.cursor() as cursor:
        set_local(cursor, {"statement_timeout": "1234ms", "lock_timeout": "567ms"})
        assert (current("statement_timeout"), current("lock_timeout")) == ("1234ms", "567ms")
    assert (current("statement_timeout"), current("lock_timeout")) == before


def test_local_settings_put_the_callers_values_back_afterwards():
    before = current("statement_timeout")
    with transaction.atomic(), connection.cursor() as cursor:
        with local_settings(cursor, {"statement_timeout": "4321ms"}):
            assert current("statement_timeout") == "4321ms"
        assert current("statement_timeout") == before
    assert current("statement_timeout") == before


def sleep_under_a_short_timeout() -> None:
    with (
        transaction.atomic(),
        connection.cursor() as cursor,
        local_settings(cursor, {"statement_timeout": "10ms"}),
    ):
        cursor.execute("SELECT pg_sleep(1)")


def test_a_failure_inside_local_settings_rolls_them_back_with_its_savepoint():
    before = current("statement_timeout")
    with pytest.raises(DatabaseError):
        sleep_under_a_short_timeout()
    # The enclosing transaction is usable and has its own value again.
    assert current("statement_timeout") == before


def test_a_value_is_a_parameter_never_sql():
    with transaction.atomic(), connection.cursor() as cursor:
        set_local(cursor, {"application_name": "x'); SELECT pg_sleep(10); --"})
        assert current("application_name") == "x'); SELECT pg_sleep(10); --"
