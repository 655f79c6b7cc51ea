"""The nginx files under deploy/nginx/, loaded by the real nginx: each passes
``nginx -t``, and the example site serves the API over TLS in front of the
README's gunicorn command, as an operator would run them."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import servers
from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create
from crm.tests.processes import REPO, needs_programs

pytestmark = needs_programs("nginx", "openssl")

DEPLOY = REPO / "deploy" / "nginx"

#: The main configuration nginx is started with: temporary paths, then the
#: context the file under test belongs in.
MAIN = """
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

#: Where each file is included: what it needs around it. A new file under
#: deploy/nginx/ must be added here (the first test fails until it is).
CONTEXTS = {
    # http level, on its own.
    "crm-http.conf": "include {path};",
    # Inside a server, after the upstream and the variable it documents.
    "crm-proxy.conf": (
        "include {deploy}/crm-http.conf;\n"
        "upstream crm_gunicorn {{ server unix:{workdir}/gunicorn.sock; }}\n"
        "server {{ listen 127.0.0.1:{port}; set $crm_forwarded_proto https; include {path}; }}"
    ),
    # A conf.d file: http level, its paths made this machine's (see site()).
    "crm-site.conf": "include {workdir}/crm-site.conf;",
}


def nginx() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def certificate(workdir: Path) -> None:
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=crm.example.com",
            "-keyout", str(workdir / "privkey.pem"), "-out", str(workdir / "fullchain.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip


def site(workdir: Path, tls_port: int, http_port: int) -> None:
    """deploy/nginx/crm-site.conf with this machine's paths and ports, nothing else changed."""
    text = (DEPLOY / "crm-site.conf").read_text()
    replacements = {
        "/srv/crm/deploy/nginx/": f"{DEPLOY}/",
        "/run/crm/gunicorn.sock": str(workdir / "gunicorn.sock"),
        "/etc/ssl/crm/": f"{workdir}/",
        "/var/log/nginx/crm-access.log": str(workdir / "access.log"),
        "listen 443 ssl http2;": f"listen 127.0.0.1:{tls_port} ssl http2;",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
    }
    for old, new in replacements.items():
        assert old in text, f"crm-site.conf no longer says {old!r}: update this test"
        text = text.replace(old, new)
    (workdir / "crm-site.conf").write_text(text)


def main_config(workdir: Path, name: str, port: int) -> Path:
    http = CONTEXTS[name].format(path=DEPLOY / name, deploy=DEPLOY, workdir=workdir, port=port)
    config = workdir / "nginx.conf"
    config.write_text(
        MAIN.format(user="user root;" if os.geteuid() == 0 else "", workdir=workdir, http=http)
    )
    return config


def test_every_file_under_deploy_nginx_passes_nginx_t(tmp_path):
    assert sorted(p.name for p in DEPLOY.iterdir()) == sorted(CONTEXTS)
    certificate(tmp_path)
    site(tmp_path, servers.free_port(), servers.free_port())
    for name in CONTEXTS:
        config = main_config(tmp_path, name, servers.free_port())
        result = subprocess.run(
            [nginx(), "-t", "-c", str(config), "-p", str(tmp_path)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"{name}: {result.stderr}"
        assert "test is successful" in result.stderr


def request(connection: http.client.HTTPConnection, path: str, token: str | None = None):
    headers = {"Host": "crm.example.com"}
    if token:
        headers["Authorization"] = f"Token {token}"
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def answered(connection: http.client.HTTPConnection, path: str) -> int | None:
    try:
        return request(connection, path)[0]
    except OSError:
        connection.close()
        return None


@pytest.mark.django_db(transaction=True)
def test_the_example_site_serves_the_api_over_tls_in_front_of_the_readme_gunicorn(tmp_path):
    """The README's production command (gunicorn on a Unix socket, production
    settings, one proxy declared) behind crm-site.conf as written."""
    customer_dataset_replace(n=30, chunk=30, seed=2)
    token = api_user_create(username="site", read_only=True)
    certificate(tmp_path)
    tls_port, http_port = servers.free_port(), servers.free_port()
    site(tmp_path, tls_port, http_port)
    env = {
        **servers.production_environment("s" * 64),
        "DJANGO_ALLOWED_HOSTS": "crm.example.com",
        "CRM_NUM_PROXIES": "1",
        "CRM_BIND": f"unix:{tmp_path / 'gunicorn.sock'}",
        "GUNICORN_WORKERS": "1",
    }
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:crm.gunicorn_conf", "crm.wsgi"],
        cwd=REPO,
        env=env,
        stdout=(tmp_path / "gunicorn.out").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    config = main_config(tmp_path, "crm-site.conf", 0)
    proxy = subprocess.Popen(
        [nginx(), "-c", str(config), "-p", str(tmp_path)],
        stderr=(tmp_path / "nginx.err").open("w"),
        start_new_session=True,
    )
    try:
        tls = http.client.HTTPSConnection(
            "127.0.0.1", tls_port, context=ssl._create_unverified_context(), timeout=30
        )
        deadline = time.monotonic() + 60
        while (status := answered(tls, "/healthz")) != 200:
            assert gunicorn.poll() is None, "gunicorn exited"
            assert proxy.poll() is None, "nginx exited"
            assert time.monotonic() < deadline, f"/healthz still answers {status}"
            time.sleep(0.3)
        status, headers, body = request(tls, "/api/users/?page_size=2", token)
        assert status == 200, body
        assert len(json.loads(body)["results"]) == 2
        assert headers["Server"] == "nginx", "no version"
        # The application saw HTTPS and the client's address from nginx.
        assert json.loads(body)["next"].startswith("https://crm.example.com/")
        plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
        status, headers, _ = request(plain, "/api/users/")
        assert status == 301
        assert headers["Location"] == "https://crm.example.com/api/users/"
    finally:
        for process in (proxy, gunicorn):
            servers.stop(process)
    access = (tmp_path / "access.log").read_text()
    assert "GET /api/users/ HTTP/" in access
    assert "page_size" not in access, "the access log keeps no query string"
