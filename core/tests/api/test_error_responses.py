"""Every error a client of /api/ can get is JSON in the documented shape
({"detail": ...}), whichever layer answers: nginx, gunicorn or the application."""

from __future__ import annotations

import http.client
import os
import signal
import socket
from urllib.parse import urlsplit

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
def test_what_nginx_or_gunicorn_refuses_is_json(stack):
    running, token = stack
    assert_json_error(call(running.url, "/api/users/", method="TRACE"), 405)
    # The API's limits, 4 kB a line, are gunicorn's, in JSON (crm/gunicorn_workers.py).
    assert_json_error(call(running.url, "/api/users/?search=" + "a" * 5000, token=token), 414)
    assert_json_error(
        call(running.url, "/api/users/", token=token, headers={"X-Big": "b" * 5000}), 431
    )
    # nginx's, past 16 kB a line.
    assert_json_error(
        call(running.url, "/api/users/", token=token, headers={"X-Big": "b" * 20_000}), 400
    )
    assert_json_error(call(running.url, "/_crm_error/502"), 404)
    too_large = call(running.url, "/api/users/", method="POST", token=token, body=b"x" * 9_000_000)
    assert_json_error(too_large, 413)


def raw_request(url: str, head: bytes) -> Answer:
    """Send ``head`` as it is (http.client refuses raw non-ASCII and control
    bytes, which curl and other clients send), read the answer to its end."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=15) as sock:
        sock.sendall(head)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return Answer(response.status, response.headers, response.read())


@needs_programs("nginx")
def test_raw_bytes_in_the_request_are_a_json_400_and_reach_no_log(stack, tmp_path):
    """A raw "ü" in the request line, and a control character in a header's
    value, got gunicorn's HTML 400, and gunicorn's error log recorded the
    whole request line: a customer's name, past the application's masking."""
    running, token = stack
    host = f"Host: {urlsplit(running.url).netloc}\r\nAuthorization: Token {token}\r\n"
    encoded = raw_request(
        running.url,
        f"GET /api/users/?last_name=Müller HTTP/1.1\r\n{host}Connection: close\r\n\r\n".encode(),
    )
    assert_json_error(encoded, 400)
    assert "M%C3%BCller" in encoded.json()["detail"], "says how to send it"
    control = raw_request(
        running.url,
        f"GET /api/users/ HTTP/1.1\r\n{host}X-Note: Hofer\x01Anna\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    assert_json_error(control, 400)
    assert "control character" in control.json()["detail"]
    # Each layer's logs: gunicorn's own and what the workers wrote.
    logs = b"".join(path.read_bytes() for path in tmp_path.glob("gunicorn.*"))
    assert b"Refused a request" in logs
    for secret in ("Müller".encode(), "Müller".encode("latin-1"), b"Hofer", b"Anna"):
        assert secret not in logs


@needs_programs("nginx")
def test_a_path_outside_the_api_is_a_json_404_unless_a_browser_asks(stack):
    running, _ = stack
    assert_json_error(call(running.url, "/no-such-page/"), 404)
    assert_json_error(call(running.url, "/static/no-such-file.css", headers={"Accept": "*/*"}), 404)
    page = call(running.url, "/no-such-page/", headers={"Accept": "text/html,*/*;q=0.8"})
    assert page.status == 404
    assert page.headers["Content-Type"].startswith("text/html")


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
