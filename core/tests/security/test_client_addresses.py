"""Clients that share an address, and a proxy nobody declared, through the real stack.

gunicorn (three workers) behind the project's nginx; each client binds its
own address in 127.0.0.0/8, which nginx passes on in X-Forwarded-For. A bad
client must spend only its own failure budget: not the valid users behind
the same address (an office, a VPN, a carrier NAT), and not every client
behind a proxy the application was not told about.
"""

from __future__ import annotations

import pytest

from bench import servers
from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create
from crm.tests.http_client import call
from crm.tests.processes import needs_programs

pytestmark = [pytest.mark.django_db(transaction=True), needs_programs("nginx")]

#: Per day, so that no test sees its window reset halfway.
ANON_RATE = "20/day"
BAD_TOKEN = "0" * 40


@pytest.fixture
def tokens():
    customer_dataset_replace(n=30, chunk=30, seed=6)
    return {
        "reader": api_user_create(username="office-reader", read_only=True),
        "writer": api_user_create(username="office-writer", read_only=False),
    }


def stack(tmp_path, token: str, **extra_env: str):
    return servers.serving_stack(
        tmp_path,
        secret_key="a" * 64,
        token=token,
        workers=3,
        extra_env={"CRM_THROTTLE_ANON": ANON_RATE, "CRM_THROTTLE_USER": "none", **extra_env},
    )


def statuses(url: str, count: int, **request) -> list[int]:
    return [call(url, "/api/users/?page_size=1", **request).status for _ in range(count)]


def test_valid_credentials_are_served_from_an_address_whose_failures_are_refused(tmp_path, tokens):
    with stack(tmp_path, tokens["reader"]) as running:
        bad = statuses(running.url, 30, token=BAD_TOKEN, source="127.0.0.5")
        assert bad[:20] == [401] * 20
        assert set(bad[20:]) == {429}, bad
        # Neither token has been seen by any worker: each is looked up.
        assert statuses(running.url, 12, token=tokens["reader"], source="127.0.0.5") == [200] * 12
        assert statuses(running.url, 6, token=tokens["writer"], source="127.0.0.5") == [200] * 6
        # The address's failures are still refused...
        assert statuses(running.url, 3, token=BAD_TOKEN, source="127.0.0.5") == [429] * 3
        assert statuses(running.url, 3, source="127.0.0.5") == [429] * 3
        # ...and no other address's.
        assert statuses(running.url, 3, token=BAD_TOKEN, source="127.0.0.6") == [401] * 3


def test_behind_an_undeclared_proxy_one_clients_failures_refuse_no_other_client(tmp_path, tokens):
    """nginx in front, CRM_NUM_PROXIES left at 0: gunicorn's Unix socket gives no
    address. Each connection is a client of its own, and the operator is told."""
    with stack(tmp_path, tokens["reader"], CRM_NUM_PROXIES="0") as running:
        assert set(statuses(running.url, 30, token=BAD_TOKEN, source="127.0.0.2")) == {401}
        assert statuses(running.url, 6, source="127.0.0.3") == [401] * 6
        assert statuses(running.url, 6, token=tokens["reader"], source="127.0.0.4") == [200] * 6
    log = (tmp_path / "gunicorn.out").read_text()
    warnings = log.count("but CRM_NUM_PROXIES is 0")
    assert 1 <= warnings <= 3, "once per worker process"
    assert "Set CRM_NUM_PROXIES to the number of proxies" in log
    started = (tmp_path / "gunicorn.log").read_text()
    assert "gunicorn listens on a Unix socket, so a proxy is in front" in started
