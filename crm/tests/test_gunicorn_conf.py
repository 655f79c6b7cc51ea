"""gunicorn's configuration: the limits agree with the application's, and a
real gunicorn opens no socket but the one it serves on."""

from __future__ import annotations

import http.client
import importlib
import json
import secrets
import socket

import pytest

from bench import servers
from core.security.api_users import api_user_create
from crm import gunicorn_conf


def configuration(monkeypatch, **environ: str):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return importlib.reload(gunicorn_conf)


@pytest.fixture(autouse=True)
def _reload_defaults():
    yield
    importlib.reload(gunicorn_conf)


@pytest.mark.parametrize(
    ("export_ms", "import_ms", "timeout"),
    [("600000", "600000", 630), ("1500", "1500", 32), ("1500", "90000", 120), ("0", "1500", 0)],
)
def test_the_worker_timeout_outlasts_the_exports_and_imports(
    monkeypatch, export_ms, import_ms, timeout
):
    """A sync worker answers gunicorn's heartbeat only between requests: a
    timeout shorter than the export's would cut a slow reader's file, and one
    shorter than the import's would kill the worker mid-import."""
    environ = {"CRM_EXPORT_TIMEOUT_MS": export_ms, "CRM_IMPORT_TIMEOUT_MS": import_ms}
    assert configuration(monkeypatch, **environ).timeout == timeout


def test_gunicorn_opens_no_control_socket(tmp_path):
    """gunicorn 25.1+ would open one at a path shared by every gunicorn the
    user runs ($XDG_RUNTIME_DIR/gunicorn.ctl, else ~/.gunicorn/gunicorn.ctl)."""
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir()
    env = {
        **servers.production_environment(secrets.token_urlsafe(64), database_env={}),
        "HOME": str(tmp_path),
        "XDG_RUNTIME_DIR": str(runtime),
    }
    port = servers.free_port()
    process = servers.start_gunicorn(
        f"127.0.0.1:{port}", env=env, log=tmp_path / "gunicorn.log", workers=1
    )
    try:
        # /healthz needs no database. gunicorn opens its control socket right
        # after forking the workers, long before one of them can answer.
        servers.wait_ready(
            f"http://127.0.0.1:{port}/healthz", [process], {"X-Forwarded-Proto": "https"}
        )
        assert list(runtime.iterdir()) == []
        assert not (tmp_path / ".gunicorn").exists()
    finally:
        servers.stop(process)


@pytest.mark.django_db(transaction=True)
def test_a_clean_stop_leaves_nothing_in_the_temporary_folder(tmp_path):
    """The workers' slots folder (crm-slots-<uid>-<pid>) stayed after every
    clean stop (26 had piled up on one machine); the metrics folder went."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    token = api_user_create(username="stopper", read_only=True)
    env = {
        **servers.production_environment(secrets.token_urlsafe(64)),
        "TMPDIR": str(temporary),
        # The request takes a slot (the test stacks turn the cap off).
        "CRM_USER_CONCURRENCY": "1",
    }
    port = servers.free_port()
    process = servers.start_gunicorn(
        f"127.0.0.1:{port}", env=env, log=tmp_path / "gunicorn.log", workers=2
    )
    try:
        servers.wait_ready(
            f"http://127.0.0.1:{port}/api/users/?page_size=1",
            [process],
            {"X-Forwarded-Proto": "https", "Authorization": f"Token {token}"},
        )
        assert any(path.name.startswith("crm-slots-") for path in temporary.iterdir())
    finally:
        servers.stop(process)
    assert process.returncode == 0, "a clean stop"
    assert sorted(path.name for path in temporary.iterdir()) == []


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_what_gunicorn_refuses_is_json_and_its_log_keeps_no_request_line(tmp_path, worker_class):
    """Behind no proxy (nginx refuses raw bytes in a request line itself):
    gunicorn answered with its HTML page and logged the whole line."""
    env = {
        **servers.production_environment(secrets.token_urlsafe(64), database_env={}),
        "GUNICORN_WORKER_CLASS": worker_class,
    }
    port = servers.free_port()
    log = tmp_path / "gunicorn.log"
    process = servers.start_gunicorn(f"127.0.0.1:{port}", env=env, log=log, workers=1)
    requests = [
        (b"GET /healthz?last_name=M\xc3\xbcller HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: Hofer\x01Anna\r\n\r\n", 400),
        (b"GET /healthz?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 5000 + b"\r\n\r\n", 431),
    ]
    try:
        servers.wait_ready(
            f"http://127.0.0.1:{port}/healthz", [process], {"X-Forwarded-Proto": "https"}
        )
        answers = []
        for head, _ in requests:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(head)
                response = http.client.HTTPResponse(sock)
                response.begin()
                answers.append((response.status, response.getheader("Content-Type")))
                assert set(json.loads(response.read())) == {"detail"}
    finally:
        servers.stop(process)
    assert answers == [(status, "application/json") for _, status in requests]
    logged = log.read_bytes() + log.with_suffix(".out").read_bytes()
    assert b"Refused a request" in logged
    for secret in (b"M\xc3\xbcller", "Müller".encode("latin-1"), b"Hofer", b"aaaa"):
        assert secret not in logged
