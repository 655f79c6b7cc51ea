"""Every error a client of /api/ can get is JSON in the documented shape
({"detail": ...}), whichever layer answers: nginx, gunicorn or the application."""

from __future__ import annotations

import os
import signal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from bench import servers
from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create
from crm.tests.http_client import Answer, call
from crm.tests.processes import needs_programs, table_locked


def assert_json_error(answer: Answer, status: int, keys: set[str] | None = None) -> None:
    assert answer.status == status, (answer.status, answer.body[:200])
    assert answer.is_json, (answer.headers.get("Content-Type"), answer.body[:200])
    assert set(answer.json()) == (keys or {"detail"})


@pytest.fixture
def stack(tmp_path, db):
    token = api_user_create(username="errors", read_only=True)
    with servers.serving_stack(tmp_path, secret_key="x" * 64, token=token, workers=2) as running:
        yield running, token


pytestmark = [pytest.mark.django_db(transaction=True)]


@needs_programs("nginx")
def test_what_nginx_refuses_is_json(stack):
    running, token = stack
    assert_json_error(call(running.url, "/api/users/", method="TRACE"), 405)
    assert_json_error(call(running.url, "/api/users/?search=" + "a" * 5000, token=token), 414)
    assert_json_error(
        call(running.url, "/api/users/", token=token, headers={"X-Big": "b" * 5000}), 400
    )
    assert_json_error(call(running.url, "/_crm_error/502"), 404)
    too_large = call(running.url, "/api/users/", method="POST", token=token, body=b"x" * 9_000_000)
    assert_json_error(too_large, 413)


@needs_programs("nginx")
def test_what_gets_past_nginx_is_answered_by_the_application_not_by_gunicorns_html(stack):
    """gunicorn's own limits (a 4,094-byte request line, 100 headers) were
    below nginx's: its HTML 400 or 414 reached the client."""
    running, token = stack
    many = {f"X-Header-{n}": "1" for n in range(150)}
    assert call(running.url, "/api/users/?page_size=1", token=token, headers=many).status == 200
    long_line = call(running.url, "/api/users/?search=" + "a" * 4000, token=token)
    # The application's own 400: search is at most 100 characters.
    assert_json_error(long_line, 400, keys={"search"})


@needs_programs("nginx")
def test_an_application_that_cannot_be_reached_is_a_json_502_to_retry(stack):
    running, token = stack
    gunicorn = running.processes[0]
    os.killpg(gunicorn.pid, signal.SIGKILL)
    gunicorn.wait(timeout=10)
    answer = call(running.url, "/api/users/", token=token)
    assert_json_error(answer, 502)
    assert answer.headers["Retry-After"] == "5"


@needs_programs("nginx")
def test_an_application_that_does_not_answer_in_time_is_a_json_504_to_retry(tmp_path, db):
    """Every gunicorn process stopped (SIGSTOP): nginx's connection waits in
    the socket's backlog, and nginx gives up after proxy_read_timeout."""
    token = api_user_create(username="errors", read_only=True)
    with servers.serving_stack(
        tmp_path, secret_key="x" * 64, token=token, workers=1, read_timeout="1s"
    ) as running:
        gunicorn = running.processes[0]
        os.killpg(gunicorn.pid, signal.SIGSTOP)
        try:
            answer = call(running.url, "/api/users/", token=token)
        finally:
            os.killpg(gunicorn.pid, signal.SIGCONT)
    assert_json_error(answer, 504)
    assert answer.headers["Retry-After"] == "5"


def test_the_schema_refuses_in_json_not_yaml():
    response = Client().get("/api/schema/")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) == {"detail"}


def test_the_admin_answers_a_database_that_does_not_answer_with_a_503(settings):
    customer_dataset_replace(n=5, chunk=5, seed=1)
    get_user_model().objects.create_superuser("root", "root@example.com", "the-Right-pass-1")
    client = Client()
    client.login(username="root", password="the-Right-pass-1")
    assert client.get("/admin/core/appuser/").status_code == 200
    with table_locked():
        locked = client.get("/admin/core/appuser/")
    assert locked.status_code == 503
    assert locked["Retry-After"] == "5"
    assert b"try again shortly" in locked.content
