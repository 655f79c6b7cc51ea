"""The backend's health check: no round trip while the socket is quiet, a real one else."""

from __future__ import annotations

import select
import time

import psycopg
import pytest
from django.db import close_old_connections, connections

from core.tests.clients import api_client

pytestmark = pytest.mark.django_db(transaction=True)


def get(client, url: str):
    """A request as a server makes it: Django's test client skips the
    request_started handler that readies persistent connections."""
    close_old_connections()
    return client.get(url)


@pytest.fixture
def usability_checks(monkeypatch) -> list[bool]:
    """Each time Django's round-trip check (``is_usable``) runs, and its answer."""
    calls: list[bool] = []
    wrapper = connections["default"]
    original = type(wrapper).is_usable

    def counted(self) -> bool:
        calls.append(original(self))
        return calls[-1]

    monkeypatch.setattr(type(wrapper), "is_usable", counted)
    monkeypatch.setitem(wrapper.settings_dict, "CONN_HEALTH_CHECKS", True)
    monkeypatch.setitem(wrapper.settings_dict, "CONN_MAX_AGE", 60)
    return calls


def test_a_healthy_session_is_reused_without_a_round_trip(usability_checks):
    client = api_client()
    for _ in range(5):
        assert get(client, "/api/users/?count=none").status_code == 200
    assert usability_checks == []


def test_a_session_the_server_ended_is_replaced_before_the_next_request(usability_checks):
    client = api_client()
    assert get(client, "/api/users/?count=none").status_code == 200
    pid = connections["default"].connection.info.backend_pid
    params = connections["default"].get_connection_params()
    with psycopg.connect(
        **{k: params[k] for k in ("host", "port", "dbname", "user") if params.get(k)},
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    # The server's goodbye arrives on the socket.
    deadline = time.monotonic() + 5
    while not select.select([connections["default"].connection.fileno()], [], [], 0.1)[0]:
        assert time.monotonic() < deadline
    assert get(client, "/api/users/?count=none").status_code == 200
    assert usability_checks == [False], "the dead session was checked, found dead, replaced"
    assert connections["default"].connection.info.backend_pid != pid
