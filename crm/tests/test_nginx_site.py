"""The nginx files under deploy/nginx/, loaded by the real nginx.

``nginx.conf``, the complete configuration, passes ``nginx -t`` from the
repository as it is; with this machine's paths and ports (its lines marked
"this machine's", nothing else) it serves the API over TLS, HTTP/1.1 and
HTTP/2, in front of the README's gunicorn command, and keeps one address's
slowloris from taking the connections everyone else needs. The two
fragments it includes pass ``nginx -t`` in their contexts too.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import servers
from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create
from crm.tests.processes import REPO, needs_programs

DEPLOY = REPO / "deploy" / "nginx"
#: Debian's stream module (libnginx-mod-stream): nginx.conf counts connections with it.
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
#: The placeholder certificate nginx.conf names until an operator sets theirs.
SNAKEOIL = (
    Path("/etc/ssl/certs/ssl-cert-snakeoil.pem"),
    Path("/etc/ssl/private/ssl-cert-snakeoil.key"),
)
HOST = "crm.example.com"

#: The main configuration the two fragments are checked in: temporary paths,
#: then the context each belongs in.
FRAGMENT_MAIN = """
worker_processes 1;
daemon off;
{user}
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    {http}
}}
"""

FRAGMENTS = {
    # http level, on its own.
    "crm-http.conf": "include {path};",
    # Inside a server, after the upstream and the variable it documents.
    "crm-proxy.conf": (
        "include {deploy}/crm-http.conf;\n"
        "upstream crm_gunicorn {{ server unix:{workdir}/gunicorn.sock; }}\n"
        "server {{ listen 127.0.0.1:{port}; set $crm_forwarded_proto https; include {path}; }}"
    ),
}


def nginx() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def test_the_folder_holds_the_configuration_and_its_two_fragments():
    assert sorted(p.name for p in DEPLOY.iterdir()) == sorted([*FRAGMENTS, "nginx.conf"])


@needs_programs("nginx")
def test_each_fragment_passes_nginx_t_in_its_context(tmp_path):
    for name, context in FRAGMENTS.items():
        http = context.format(
            path=DEPLOY / name, deploy=DEPLOY, workdir=tmp_path, port=servers.free_port()
        )
        config = tmp_path / "fragment.conf"
        user = "user root;" if os.geteuid() == 0 else ""
        config.write_text(FRAGMENT_MAIN.format(user=user, workdir=tmp_path, http=http))
        result = subprocess.run(
            [nginx(), "-t", "-c", str(config), "-p", str(tmp_path)], capture_output=True, text=True
        )
        assert result.returncode == 0, f"{name}: {result.stderr}"


@needs_programs("nginx", STREAM_MODULE, "make-ssl-cert")
def test_nginx_t_accepts_the_complete_configuration_from_the_repository_as_it_is():
    """What the recipe in docs/operations.md runs. Root only: the production
    paths (/run, /var/log/nginx) are root's."""
    if os.geteuid() != 0:
        pytest.skip("nginx -t of the production configuration opens root's paths")
    if not all(path.exists() for path in SNAKEOIL):
        # What ssl-cert does when it is installed, and the recipe says.
        subprocess.run(["make-ssl-cert", "generate-default-snakeoil"], check=True)
    pid = Path("/run/nginx-crm.pid")
    existed = pid.exists()
    try:
        result = subprocess.run(
            [nginx(), "-t", "-c", str(DEPLOY / "nginx.conf")], capture_output=True, text=True
        )
    finally:
        if not existed and pid.exists() and pid.stat().st_size == 0:
            pid.unlink()  # nginx -t checks that it can write the file
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def certificate(workdir: Path) -> None:
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", f"/CN={HOST}",
            "-keyout", str(workdir / "privkey.pem"), "-out", str(workdir / "fullchain.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip


def machine_config(workdir: Path, tls_port: int, http_port: int, **tuning: str) -> Path:
    """nginx.conf with this machine's paths and ports, beside links to the
    repository's two fragments (nginx resolves the includes beside it).

    Only the lines the file marks "this machine's" change (``tuning`` may
    replace more, saying which): a path or port set anywhere else fails here.
    """
    sockets = {"https": workdir / "https.sock", "http": workdir / "http.sock"}
    replacements = {
        "user www-data;": "user root;" if os.geteuid() == 0 else "",
        "pid /run/nginx-crm.pid;": f"pid {workdir}/nginx.pid;",
        "/var/log/nginx/crm-error.log": f"{workdir}/error.log",
        "listen 443;": f"listen 127.0.0.1:{tls_port};",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "unix:/run/nginx-crm-https.sock": f"unix:{sockets['https']}",
        "unix:/run/nginx-crm-http.sock": f"unix:{sockets['http']}",
        "/var/log/nginx/crm-access.log": f"{workdir}/access.log",
        str(SNAKEOIL[0]): f"{workdir}/fullchain.pem",
        str(SNAKEOIL[1]): f"{workdir}/privkey.pem",
        "/var/lib/nginx/": f"{workdir}/",
        "unix:/run/crm/gunicorn.sock": f"unix:{workdir}/gunicorn.sock",
        'set $crm_https_port "";': f'set $crm_https_port ":{tls_port}";',
    }
    text = (DEPLOY / "nginx.conf").read_text()
    for line in text.splitlines():
        if "# this machine's" in line:
            assert any(old in line for old in replacements), f"a path this test misses: {line}"
    for old, new in {**replacements, **tuning}.items():
        assert old in text, f"nginx.conf no longer says {old!r}: update this test"
        text = text.replace(old, new)
    (workdir / "nginx.conf").write_text(text)
    for name in FRAGMENTS:
        (workdir / name).symlink_to(DEPLOY / name)
    return workdir / "nginx.conf"


@dataclass
class Site:
    workdir: Path
    tls_port: int
    http_port: int
    token: str


@contextlib.contextmanager
def running_site(workdir: Path, **tuning: str) -> Iterator[Site]:
    """The README's production command (gunicorn on a Unix socket, production
    settings, one proxy declared) behind nginx.conf with this machine's paths."""
    customer_dataset_replace(n=30, chunk=30, seed=2)
    token = api_user_create(username="site", read_only=True)
    certificate(workdir)
    site = Site(workdir, servers.free_port(), servers.free_port(), token)
    config = machine_config(workdir, site.tls_port, site.http_port, **tuning)
    env = {
        **servers.production_environment("s" * 64),
        "DJANGO_ALLOWED_HOSTS": HOST,
        "CRM_NUM_PROXIES": "1",
        "CRM_BIND": f"unix:{workdir / 'gunicorn.sock'}",
        "GUNICORN_WORKERS": "1",
    }
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:crm.gunicorn_conf", "crm.wsgi"],
        cwd=REPO,
        env=env,
        stdout=(workdir / "gunicorn.out").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proxy = subprocess.Popen(
        [nginx(), "-c", str(config), "-g", "daemon off;"],
        stderr=(workdir / "nginx.err").open("w"),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while (status := answered(site, "/healthz")) != 200:
            assert gunicorn.poll() is None, "gunicorn exited"
            assert proxy.poll() is None, (workdir / "nginx.err").read_text()
            assert time.monotonic() < deadline, f"/healthz still answers {status}"
            time.sleep(0.3)
        yield site
    finally:
        for process in (proxy, gunicorn):
            servers.stop(process)


def tls_connection(site: Site, source: str = "127.0.0.1") -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection(
        "127.0.0.1",
        site.tls_port,
        context=ssl._create_unverified_context(),
        timeout=30,
        source_address=(source, 0),
    )


def request(connection: http.client.HTTPConnection, path: str, token: str | None = None):
    headers = {"Host": HOST}
    if token:
        headers["Authorization"] = f"Token {token}"
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def answered(site: Site, path: str, source: str = "127.0.0.1") -> int | None:
    connection = tls_connection(site, source)
    try:
        return request(connection, path)[0]
    except OSError:
        return None
    finally:
        connection.close()


def curl_http2(site: Site, path: str, *args: str) -> tuple[str, str, bytes]:
    """An HTTP/2 request by curl: its status, the protocol it spoke, its body."""
    result = subprocess.run(
        [
            "curl", "-sk", "--http2", "--resolve", f"{HOST}:{site.tls_port}:127.0.0.1",
            "-H", f"Authorization: Token {site.token}", "-o", "-",
            "-w", "\n%{http_code} %{http_version} %{content_type}",
            f"https://{HOST}:{site.tls_port}{path}", *args,
        ],
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    body, _, written = result.stdout.rpartition(b"\n")
    status, version, content_type = [*written.decode().split(" "), "", ""][:3]
    return f"{status} {version}", content_type, body


@pytest.mark.django_db(transaction=True)
@needs_programs("nginx", "openssl", "curl", STREAM_MODULE)
def test_the_site_serves_the_api_over_tls_with_the_same_json_errors_over_http2(tmp_path):
    with running_site(tmp_path) as site:
        tls = tls_connection(site, source="127.0.0.7")
        status, headers, body = request(tls, "/api/users/?page_size=2", site.token)
        assert status == 200, body
        assert len(json.loads(body)["results"]) == 2
        assert headers["Server"] == "nginx", "no version"
        # The application saw HTTPS from nginx.
        assert json.loads(body)["next"].startswith(f"https://{HOST}/")

        plain = http.client.HTTPConnection("127.0.0.1", site.http_port, timeout=30)
        status, headers, page = request(plain, "/api/users/")
        assert status == 301
        assert headers["Location"] == f"https://{HOST}:{site.tls_port}/api/users/", "its port kept"
        assert headers["Server"] == "nginx"
        assert b"1.2" not in page, "no version on the plain server's page either"

        # HTTP/2 answers what HTTP/1.1 answers, in JSON (it was an HTML 413, a
        # GOAWAY for a 6.5 kB header, and a 5 kB query passed to the application).
        assert curl_http2(site, "/api/users/?page_size=1")[0] == "200 2"
        big_body = curl_http2(
            site, "/api/users/", "-X", "POST", "--data-binary", f"@{write(tmp_path, 9_000_000)}"
        )
        query = curl_http2(site, "/api/users/?search=" + "a" * 5000)
        header = curl_http2(site, "/api/users/", "-H", "X-Big: " + "b" * 6500)
        for answer, status in [(big_body, "413 2"), (query, "414 2"), (header, "431 2")]:
            assert answer[0] == status, answer
            assert answer[1] == "application/json", answer
            assert set(json.loads(answer[2])) == {"detail"}
    access = (tmp_path / "access.log").read_text()
    assert "127.0.0.7 " in access, "the client's address came through the stream proxy"
    assert "GET /api/users/ HTTP/" in access
    assert "page_size" not in access, "the access log keeps no query string"


def write(folder: Path, size: int) -> Path:
    path = folder / "body.bin"
    path.write_bytes(b"x" * size)
    return path


class Slowloris:
    """``count`` connections from ``source`` that start a TLS record (a
    handshake of 16 kB announced) and send one byte of it now and then, so
    that it never completes; each one nginx closes is opened again, as an
    attacker would."""

    RECORD_START = b"\x16\x03\x01\x40\x00"

    def __init__(self, source: str, port: int, count: int) -> None:
        self.source, self.port, self.count = source, port, count
        self.sockets: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def connect(self) -> socket.socket:
        sock = socket.socket()
        sock.settimeout(0.05)
        sock.bind((self.source, 0))
        with contextlib.suppress(OSError):
            sock.connect(("127.0.0.1", self.port))
            sock.send(self.RECORD_START)
        sock.setblocking(False)
        return sock

    def alive(self, sock: socket.socket) -> bool:
        try:
            return sock.recv(1) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    def run(self) -> None:
        while not self.stop.wait(0.2):
            for index, sock in enumerate(self.sockets):
                if self.alive(sock):
                    with contextlib.suppress(OSError):
                        sock.send(b"\x00")
                else:
                    sock.close()
                    self.sockets[index] = self.connect()

    def __enter__(self) -> Slowloris:
        self.sockets = [self.connect() for _ in range(self.count)]
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()


@pytest.mark.django_db(transaction=True)
@needs_programs("nginx", "openssl", STREAM_MODULE)
def test_a_slowloris_from_one_address_leaves_another_served(tmp_path):
    """600 connections from 127.0.0.9, reopened as nginx closes them, against
    512 connections in all (one worker, shrunk from 4,096 so that the test
    needs few sockets): without a limit per address they held every one, and
    a client from elsewhere got no answer. nginx.conf accepts 64 per address
    and closes the rest at once."""
    tuning = {
        "worker_processes auto;": "worker_processes 1;",
        "worker_connections 4096;": "worker_connections 512;",
    }
    with running_site(tmp_path, **tuning) as site, Slowloris("127.0.0.9", site.tls_port, 600):
        time.sleep(2)
        statuses = [answered(site, "/healthz", source="127.0.0.10") for _ in range(10)]
    assert statuses == [200] * 10
