"""``settings.DATABASES`` from the environment.

``DATABASE_URL`` names any PostgreSQL; without it the project runs on the
embedded PostgreSQL 18 (:mod:`crm.postgres.embedded`). Hot standbys for reads
come from ``DATABASE_REPLICA_URLS`` (see :mod:`crm.replicas`). Everything here
is a pure function of the environment it is given, so the tests check every
combination in-process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from psycopg import sql

from crm import env
from crm.errors import ConfigurationError

#: Where the embedded server keeps its data unless ``CRM_PGDATA`` says otherwise
#: (inside the checkout, ignored by git).
DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / ".pgdata"

#: How long a request waits for a replica that does not answer before it falls
#: back to the primary (seconds).
REPLICA_CONNECT_TIMEOUT = 2


def default_data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``CRM_PGDATA``, or ``.pgdata`` inside the checkout."""
    configured = environ.get("CRM_PGDATA")
    if configured:
        return Path(configured).expanduser().resolve()
    return DEFAULT_DATA_DIR


def database_from_url(url: str, source: str) -> dict[str, Any]:
    """Parse a PostgreSQL URL, naming ``source`` (the variable) in every error.

    libpq's multi-host form is understood too:
    ``postgresql://u:p@node1:5432,node2:5432,node3:5432/crm?target_session_attrs=read-write``
    (``HOST`` and ``PORT`` become libpq's comma-separated lists): libpq tries
    the hosts in turn and keeps the first that is what
    ``target_session_attrs`` asks for (the primary of a Patroni cluster,
    whichever node it is now; ``prefer-standby``: a standby if any answers).
    """
    try:
        parts = urlsplit(url)
        hosts = _host_list(parts.netloc)
        if hosts is not None:
            # dj-database-url reads one host: give it the first, then the list.
            userinfo = parts.netloc.rpartition("@")[0]
            url = parts._replace(netloc=f"{userinfo}@{hosts[0][0]}" if userinfo else hosts[0][0])
            url = url.geturl()
        config = dj_database_url.parse(url, conn_max_age=0)
    except ValueError as exc:
        raise ConfigurationError(f"{source} is malformed: {exc}") from None
    if hosts is not None:
        config["HOST"] = ",".join(host for host, _ in hosts)
        ports = [port for _, port in hosts]
        config["PORT"] = ",".join(port or "5432" for port in ports) if any(ports) else ""
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ConfigurationError(
            f"{source} must be a postgresql:// URL (this project runs on PostgreSQL only), "
            f"got scheme {parts.scheme or 'none'!r}"
        )
    if not config.get("NAME"):
        raise ConfigurationError(
            f"{source} names no database (postgresql://user:password@host:port/DATABASE)"
        )
    config["ENGINE"] = "crm.postgres"
    config["SOURCE"] = source
    return config


def replica_urls(environ: Mapping[str, str] = os.environ) -> list[str]:
    """``DATABASE_REPLICA_URLS``: URLs separated by commas, where a comma
    inside one URL's host list (``…@a:5432,b:5432/crm``) is not a separator:
    only one followed by the next URL's scheme is."""
    value = environ.get("DATABASE_REPLICA_URLS", "")
    return [url.strip() for url in re.split(r",(?=\s*[a-z]+://)", value) if url.strip()]


def _host_list(netloc: str) -> list[tuple[str, str]] | None:
    """``[(host, port), …]`` of a multi-host URL's ``netloc`` (None for one host).

    A port must be digits (``ValueError`` otherwise, as for one host); an
    IPv6 address is bracketed (``[::1]:5432``).
    """
    hostlist = netloc.rpartition("@")[2]
    if "," not in hostlist:
        return None
    hosts = []
    for item in hostlist.split(","):
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = item.partition(":")
        if not host or (port and not port.isdigit()):
            raise ValueError(f"bad host {item!r} in the host list")
        hosts.append((host, port))
    return hosts


def session_settings(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """What every session of this project sets when it connects.

    Whatever the list's queries need is set here, per session, so that they
    run the same on the embedded server (tuned by ``ALTER SYSTEM``, see
    :data:`crm.postgres.embedded.TUNING`) and on any external PostgreSQL with
    its defaults:

    * ``jit``: off. PostgreSQL compiles a query whose estimated cost exceeds
      ``jit_above_cost`` (100,000 by default): a walk of the ordering's index
      under a LIMIT is often estimated above it, and compiling costs tens of
      milliseconds for a query that then runs in one.
    * ``work_mem``: a sort reads its matches through a bitmap of one or more
      filters' indexes (see :mod:`core.customers.plans`), which stays exact,
      one bit per row, while it fits in ``work_mem`` (about 64 bytes per table
      page); past that its pages turn lossy and every row on them is read and
      tested again. 4 MB (the default) keeps about 65,000 pages exact, 32 MB
      about 500,000 (4 GB of table). The same memory holds a deep page
      number's sort (its offset's rows as well as the page's).
    * ``random_page_cost``: 1.1, as for data that is in memory or on SSD
      (PostgreSQL's default of 4 prices every index probe like a spinning
      disk's seek and turns index walks into sequential scans and sorts).
    * ``max_parallel_workers_per_gather``: the API's queries read at most a
      few thousand index entries under a LIMIT, and starting parallel workers
      costs more than they save (measured: ``?city=vienna&page=3`` took 27 ms
      with two workers, 4 ms without). ``DATABASE_PARALLEL_WORKERS`` overrides.
    * ``pg_trgm.similarity_threshold``: ``?search=`` ranks by trigram
      similarity; 0.25 (pg_trgm's default is 0.3) lets "jon" find "John"
      (similarity 0.29) while "smiht" already finds "Smith" (0.33).
    """
    return {
        "jit": "off",
        "work_mem": "32MB",
        "random_page_cost": "1.1",
        "max_parallel_workers_per_gather": str(
            env.integer("DATABASE_PARALLEL_WORKERS", 0, environ, minimum=0)
        ),
        "pg_trgm.similarity_threshold": "0.25",
    }


def libpq_options(parameters: Mapping[str, str]) -> str:
    """``{"a": "1"}`` as libpq's ``options`` connection parameter: ``-c a=1``."""
    return " ".join(f"-c {name}={value}" for name, value in parameters.items())


def request_limits(*, statement_timeout_ms: int, lock_timeout_ms: int = 0) -> dict[str, str]:
    """The session settings that bound a request's statements: how long one may
    run, and how long it may wait for a lock (0: no limit)."""
    return {"statement_timeout": str(statement_timeout_ms), "lock_timeout": str(lock_timeout_ms)}


def databases(
    environ: Mapping[str, str] = os.environ, *, statement_timeout_ms: int, lock_timeout_ms: int = 0
) -> dict[str, dict[str, Any]]:
    """``default`` (the primary) and ``replica_1``, ``replica_2``, … from the environment.

    ``statement_timeout_ms`` and ``lock_timeout_ms`` bound every statement a
    request runs (:func:`request_limits`); replicas serve nothing but
    requests, so theirs are set when they connect (the primary's on every
    connection a request opens, see
    :class:`core.security.middleware.StatementTimeoutMiddleware`).
    """
    url = environ.get("DATABASE_URL", "")
    if url:
        primary = database_from_url(url, "DATABASE_URL")
    else:
        data_dir = default_data_dir(environ)
        primary = {
            "ENGINE": "crm.postgres",
            "NAME": "crm",
            "USER": "postgres",
            "EMBEDDED_DATA_DIR": str(data_dir),
            "SOURCE": f"the embedded PostgreSQL in {data_dir}",
        }
    name = environ.get("DATABASE_NAME")
    if name:
        primary["NAME"] = name
    # Persistent connections: a new PostgreSQL connection costs a few
    # milliseconds (a process fork on the server), more than a list request.
    primary["CONN_MAX_AGE"] = env.integer("DATABASE_CONN_MAX_AGE", 60, environ, minimum=0)
    primary["CONN_HEALTH_CHECKS"] = True
    options = primary.setdefault("OPTIONS", {})
    pool = None
    if env.boolean("DATABASE_POOL", False, environ):
        # psycopg's pool (Django 5.1+): for threaded servers; it replaces
        # persistent connections, which Django refuses to combine with it.
        primary["CONN_MAX_AGE"] = 0
        pool = {
            "min_size": env.integer("DATABASE_POOL_MIN", 2, environ, minimum=0),
            "max_size": env.integer("DATABASE_POOL_MAX", 8, environ, minimum=1),
            "timeout": 5,
        }
        options["pool"] = pool
    # Behind PgBouncer in transaction mode a session may change server
    # connection between transactions: named server-side cursors cannot
    # survive that (the export streams with COPY, not a cursor), and the
    # pooler refuses the session settings of the connection's start-up
    # packet: they belong on the database role instead (see role_settings).
    pooled = env.boolean("DATABASE_PGBOUNCER", False, environ)
    primary["DISABLE_SERVER_SIDE_CURSORS"] = pooled
    session = session_settings(environ)
    if not pooled:
        options["options"] = libpq_options(session)
    primary["TEST"] = {"NAME": environ.get("DATABASE_TEST_NAME") or None}
    result = {"default": primary}

    for number, replica_url in enumerate(replica_urls(environ), 1):
        replica = database_from_url(replica_url, f"DATABASE_REPLICA_URLS (replica {number})")
        if name:
            replica["NAME"] = name
        replica["CONN_MAX_AGE"] = primary["CONN_MAX_AGE"]
        replica["CONN_HEALTH_CHECKS"] = True
        replica["OPTIONS"] = {
            # The replica URL's own parameters (?host=/socket/dir&port=…, sslmode).
            **replica.get("OPTIONS", {}),
            "options": libpq_options(
                {
                    **session,
                    **request_limits(
                        statement_timeout_ms=statement_timeout_ms, lock_timeout_ms=lock_timeout_ms
                    ),
                }
            ),
            "connect_timeout": REPLICA_CONNECT_TIMEOUT,
        }
        if pool is not None:
            replica["OPTIONS"]["pool"] = pool
        replica["TEST"] = {"MIRROR": "default"}
        result[f"replica_{number}"] = replica
    return result


def role_settings(
    environ: Mapping[str, str] = os.environ, *, statement_timeout_ms: int, lock_timeout_ms: int = 0
) -> dict[str, str]:
    """What the API's database role must carry behind a transaction-mode pooler.

    PgBouncer hands a server connection to another client after each
    transaction, so a session setting would leak between clients, and it
    refuses the ``options`` of a connection's start-up packet. Set on the
    role (``ALTER ROLE … IN DATABASE … SET``), they apply to every session it
    opens: the settings of :func:`session_settings`, and the request's
    statement and lock timeouts (which the middleware sets per session
    otherwise). Give the API a role of its own: migrations and
    ``generate_data`` run as the owner, without the API's timeouts.
    """
    return {
        **session_settings(environ),
        **request_limits(
            statement_timeout_ms=statement_timeout_ms, lock_timeout_ms=lock_timeout_ms
        ),
    }


def role_settings_sql(
    role: str,
    database: str,
    *,
    statement_timeout_ms: int,
    lock_timeout_ms: int = 0,
    environ: Mapping[str, str] = os.environ,
) -> list[sql.Composed]:
    """``ALTER ROLE role IN DATABASE database SET name = value`` for each of
    :func:`role_settings`."""
    values = role_settings(
        environ, statement_timeout_ms=statement_timeout_ms, lock_timeout_ms=lock_timeout_ms
    )
    return [
        sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
            sql.Identifier(role),
            sql.Identifier(database),
            # An extension's setting is two names: pg_trgm.similarity_threshold.
            sql.SQL(".").join(map(sql.Identifier, name.split("."))),
            sql.Literal(value),
        )
        for name, value in values.items()
    ]
