"""The admin's sign-in: failures slow down a user name at an address, never lock its owner out."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from bench import servers
from core.security.api_users import api_user_create
from crm.tests.http_client import call
from crm.tests.processes import needs_programs

PASSWORD = "the-Right-pass-1"


@pytest.fixture
def root(db):
    return get_user_model().objects.create_superuser("admin", "admin@example.com", PASSWORD)


def sign_in(client: Client, username: str, password: str):
    return client.post(
        "/admin/login/", {"username": username, "password": password, "next": "/admin/"}
    )


@pytest.mark.django_db
def test_a_name_that_failed_too_often_at_an_address_is_refused_there_the_right_password_too(
    root, settings
):
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": None, "login": "5/hour"}
    client = Client(REMOTE_ADDR="192.0.2.60")
    for _ in range(5):
        page = sign_in(client, "admin", "wrong")
        assert page.status_code == 200
        assert b"Please enter the correct username" in page.content
    right = sign_in(client, "admin", PASSWORD)
    assert right.status_code == 200, "the right password after the burst is refused too"
    # Slowed down, not locked out: one attempt per interval (an hour / 5).
    assert b"Too many failed sign-ins. Try again in 12 minutes." in right.content


@pytest.mark.django_db
def test_failures_from_other_addresses_and_spellings_never_refuse_the_owner(root, settings):
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": None, "login": "5/hour"}
    for number, name in enumerate(["admin", "ADMIN", " admin ", "Admin"] * 3):
        sign_in(Client(REMOTE_ADDR=f"192.0.2.{100 + number}"), name, "wrong")
    assert sign_in(Client(REMOTE_ADDR="192.0.2.61"), "admin", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_the_budget_slides_one_attempt_back_per_interval(root, settings):
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": None, "login": "5/hour"}
    client = Client(REMOTE_ADDR="192.0.2.62")
    for _ in range(5):
        sign_in(client, "admin", "wrong")
    assert b"Too many failed sign-ins" in sign_in(client, "admin", PASSWORD).content
    with connection.cursor() as cursor:  # twelve minutes pass
        cursor.execute(
            "UPDATE core_throttle_window SET window_start = window_start - interval '12 minutes'"
        )
    assert sign_in(client, "admin", PASSWORD).status_code == 302


# -- on real processes: several addresses through nginx -----------------------


def csrf_form(url: str, source: str) -> tuple[str, str]:
    """The sign-in page's CSRF cookie and form token, for a client at ``source``."""
    page = call(url, "/admin/login/", source=source)
    cookie = page.headers["Set-Cookie"].split(";")[0]
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body).group(1)
    return cookie, token.decode()


def post_sign_in(url: str, source: str, username: str, password: str):
    cookie, token = csrf_form(url, source)
    body = urlencode(
        {
            "csrfmiddlewaretoken": token,
            "username": username,
            "password": password,
            "next": "/admin/",
        }
    ).encode()
    return call(
        url,
        "/admin/login/",
        method="POST",
        source=source,
        body=body,
        headers={
            "Cookie": cookie,
            "Content-Type": "application/x-www-form-urlencoded",
            # Over HTTPS (what nginx tells Django), Django's CSRF check wants the origin.
            "Referer": f"https://{url.removeprefix('http://')}/admin/login/",
        },
    )


@pytest.mark.django_db(transaction=True)
@needs_programs("nginx")
def test_failures_from_twenty_two_addresses_leave_the_admin_able_to_sign_in(tmp_path):
    get_user_model().objects.create_superuser("admin", "admin@example.com", PASSWORD)
    token = api_user_create(username="stack-probe", read_only=True)
    with servers.serving_stack(tmp_path, secret_key="l" * 64, token=token, workers=3) as stack:
        # Spellings of the name count as the name. (Each spelling no user has
        # costs the worker a production password hash, half a second: Django
        # hashes the password given for an unknown name, so that the answer
        # takes as long as for a known one.)
        for number, name in enumerate(["ADMIN", " admin "] + ["admin"] * 20):
            page = post_sign_in(stack.url, f"127.0.0.{10 + number}", name, "wrong")
            assert page.status == 200
            assert b"Please enter the correct username" in page.body
        # An attacker at one address: 20 failures, then refused, slowed down.
        for _ in range(20):
            post_sign_in(stack.url, "127.0.0.9", "admin", "wrong")
        refused = post_sign_in(stack.url, "127.0.0.9", "admin", PASSWORD)
        assert b"Too many failed sign-ins. Try again in 3 minutes." in refused.body
        # The admin, at an address of their own.
        signed_in = post_sign_in(stack.url, "127.0.0.50", "admin", PASSWORD)
        assert signed_in.status == 302
        assert signed_in.headers["Location"] == "/admin/"
