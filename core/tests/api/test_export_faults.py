"""The export under a real gunicorn: slow readers, a database that stops, one that is down.

The server runs the README's configuration (crm/gunicorn_conf.py) with a
short worker timeout (3 s, through GUNICORN_CMD_ARGS), on an embedded
PostgreSQL of its own that the tests stop. Whatever the worker model, an
export must end one of two ways a client can tell apart: complete (NDJSON with
its trailer line), or cut, with an HTTP-level error (the chunked response
lacks its last chunk; NDJSON without its trailer).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bench import servers
from crm.postgres import embedded
from crm.tests.processes import manage

ROWS = 20_000


@dataclass
class Served:
    port: int
    token: str
    data_dir: object


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    tmp_path = tmp_path_factory.mktemp("export-faults")
    data_dir = tmp_path / "pgdata"
    setup = {"CRM_PGDATA": str(data_dir), "DATABASE_URL": ""}
    try:
        assert manage("migrate", env=setup).returncode == 0
        generated = manage(
            "generate_data", "--n", str(ROWS), "--chunk", "10000", "--quiet", env=setup
        )
        assert generated.returncode == 0, generated.stderr
        token = manage("create_api_user", "--username", "probe", env=setup).stdout.strip()
        # An explicit URL: a worker that connects while the server is down
        # must fail, not start the embedded server again (first-use start).
        url = embedded.status(data_dir).conninfo("crm")
        port = servers.free_port()
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("GUNICORN_CMD_ARGS", "--timeout 3")
            patch.setenv("CRM_SSL_REDIRECT", "0")  # plain HTTP on loopback, no proxy
            server = servers.gunicorn_alone(
                port,
                workers=3,
                secret_key="k" * 64,
                log=tmp_path / "gunicorn.log",
                database_env={"DATABASE_URL": url},
            )
        try:
            for attempt in range(3):
                # A cold worker's first list request (imports, the planning
                # sample) can outlast the 3 s timeout on a loaded machine (seen
                # beside other test workers): gunicorn replaces the worker, and
                # the next one is asked.
                try:
                    servers.wait_ready(
                        f"http://127.0.0.1:{port}/api/users/?page_size=1",
                        [server],
                        {"Authorization": f"Token {token}"},
                    )
                    break
                except RuntimeError as error:
                    if "answered 500" not in str(error) or attempt == 2:
                        raise
            yield Served(port, token, data_dir)
        finally:
            servers.stop(server)
    finally:
        embedded.stop(data_dir)


def open_export(served: Served, query: str, receive_buffer: int = 16_384):
    """Send GET /api/users/export/ on a socket with a small receive buffer
    (so that the server feels a slow reader), return the response started."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", served.port))
    request = (
        f"GET /api/users/export/?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Token {served.token}\r\nX-Forwarded-Proto: https\r\n\r\n"
    )
    sock.sendall(request.encode())
    response = http.client.HTTPResponse(sock, method="GET")
    response.begin()
    return sock, response


def read_slowly(response, block: int, pause: float) -> tuple[bytes, Exception | None]:
    """Read at about block/pause bytes a second; the body and how it ended."""
    body = bytearray()
    try:
        while chunk := response.read(block):
            body += chunk
            time.sleep(pause)
    except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
        return bytes(body), exc
    return bytes(body), None


def ndjson_outcome(body: bytes) -> tuple[int, dict | None]:
    """Data lines, and the trailer if the last line is one."""
    *rows, last = body.split(b"\n")
    try:
        trailer = json.loads(last)
    except ValueError:
        return len(rows), None
    return len(rows), trailer if "end_of_export" in trailer else None


@pytest.mark.embedded_server
def test_a_slow_reader_gets_the_whole_export_or_a_visible_failure(served):
    sock, response = open_export(served, "format=ndjson")
    try:
        assert response.status == 200
        assert response.getheader("Transfer-Encoding") == "chunked"
        # About 1.6 MB/s against a ~10 MB export: longer than the worker timeout.
        body, error = read_slowly(response, 16_384, 0.01)
    finally:
        sock.close()
    rows, trailer = ndjson_outcome(body)
    if error is None:
        assert trailer == {"end_of_export": {"rows": ROWS}}, "a clean end is a whole file"
        assert rows == ROWS
    else:
        assert trailer is None, "a cut file has no trailer"
        assert rows < ROWS


@pytest.mark.embedded_server
def test_an_export_cut_by_a_database_stop_is_visibly_incomplete_then_503(served):
    sock, response = open_export(served, "format=csv")
    try:
        assert response.status == 200
        first = response.read(65_536)
        assert first.startswith(b"id,first_name")
        embedded.stop(served.data_dir)
        _, error = read_slowly(response, 65_536, 0)
    finally:
        sock.close()
    assert error is not None, "the stream broke off: the client's HTTP library says so"

    # Down: every export is a JSON 503 with Retry-After, never gunicorn's 500 page.
    for query in ["", "format=ndjson", "format=json&city=vienna"] * 7:
        connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=15)
        connection.request(
            "GET",
            f"/api/users/export/?{query}",
            headers={"Authorization": f"Token {served.token}", "X-Forwarded-Proto": "https"},
        )
        answer = connection.getresponse()
        payload = answer.read()
        connection.close()
        assert answer.status == 503, payload[:300]
        assert answer.getheader("Content-Type") == "application/json"
        assert answer.getheader("Retry-After") == "5"
        assert "database is unavailable" in json.loads(payload)["detail"]
