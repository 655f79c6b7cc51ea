"""A highly available PostgreSQL on one machine: etcd and three Patroni nodes.

``deploy/patroni/`` holds what an operator deploys (``patroni.yml`` for every
node, ``etcd.yml``); this module runs exactly those files on one machine, for
trying the cluster (``manage.py ha_cluster``), for the failover test and for
``bench_failover``:

* etcd from a copy of ``etcd.yml`` that differs in its ports and folder only
  (etcd ignores its flags when it reads a config file);
* three Patroni processes reading ``patroni.yml`` itself, each told its name,
  addresses and folders by Patroni's ``PATRONI_*`` variables. Each node has a
  loopback address of its own (127.0.0.11, .12, .13), so that to each other,
  to libpq's multi-host strings and to ``patroni --validate-config`` (which
  refuses 127.0.0.1 as a node's address) they are three machines;
* as root, every process runs as the embedded server's system user
  (PostgreSQL refuses to run as root);
* the passwords (superuser, replication, rewind, the application's two
  roles) are made for each cluster and kept in its folder (``cluster.json``,
  readable by its owner only), with the processes' ids, so that a later
  ``ha_cluster`` command finds them.

A dead machine is :meth:`Cluster.kill`: ``kill -9`` of a node's Patroni and of
its postmaster, so that nothing is left to give up the leader key or to
restart PostgreSQL. :meth:`Cluster.start_node` brings it back: Patroni finds
the new leader and rewinds the old primary's data folder into a standby
(``pg_rewind``), without copying it.

The application connects with the multi-host strings of :meth:`Cluster.urls`
(``target_session_attrs=read-write`` finds the primary, ``prefer-standby`` a
standby): no proxy in between.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql

from crm.errors import SetupError
from crm.postgres import embedded
from crm.postgres.config import role_settings_sql

#: What an operator deploys, and what this module runs.
DEPLOY_DIR = Path(__file__).resolve().parent.parent.parent / "deploy" / "patroni"
PATRONI_CONF = DEPLOY_DIR / "patroni.yml"
ETCD_CONF = DEPLOY_DIR / "etcd.yml"

NODE_NAMES = ("node1", "node2", "node3")

#: The database, the role that owns it (migrate, generate_data) and the role
#: the API connects as, which carries the request timeouts (see
#: crm.postgres.config.role_settings): timeouts on a role, not in
#: postgresql.conf, where they would cut Patroni's and the backups' sessions.
DATABASE = "crm"
OWNER_ROLE = "crm"
API_ROLE = "crm_api"


class ClusterError(SetupError):
    """The cluster cannot be started, or did not reach the state asked for in time."""


@dataclass
class Node:
    """One PostgreSQL server under its Patroni."""

    name: str
    address: str
    pg_port: int
    api_port: int
    patroni_pid: int | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.address}:{self.api_port}"

    @property
    def host_port(self) -> str:
        return f"{self.address}:{self.pg_port}"


@dataclass
class Cluster:
    """etcd and three Patroni nodes whose files live in ``workdir``.

    ``bin_dir`` holds the PostgreSQL programs (the embedded 18's, Debian's
    15's, ...); every node runs the same.
    """

    workdir: Path
    bin_dir: Path
    nodes: list[Node]
    etcd_client_port: int
    etcd_peer_port: int
    passwords: dict[str, str] = field(default_factory=dict)
    etcd_pid: int | None = None

    # -- layout ------------------------------------------------------------------------

    @classmethod
    def create(
        cls, workdir: Path, bin_dir: Path, *, pg_port: int = 0, api_port: int = 0
    ) -> Cluster:
        """A new cluster's layout (nothing started). Port 0: a free port per node."""
        workdir = workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        nodes = []
        for number, name in enumerate(NODE_NAMES, 1):
            address = f"127.0.0.{10 + number}"
            nodes.append(
                Node(
                    name=name,
                    address=address,
                    pg_port=pg_port or free_port(address),
                    api_port=api_port or free_port(address),
                )
            )
        passwords = {
            role: secrets.token_urlsafe(18)
            for role in ("superuser", "replication", "rewind", OWNER_ROLE, API_ROLE)
        }
        return cls(
            workdir=workdir,
            bin_dir=bin_dir.resolve(),
            nodes=nodes,
            etcd_client_port=free_port("127.0.0.1"),
            etcd_peer_port=free_port("127.0.0.1"),
            passwords=passwords,
        )

    @classmethod
    def load(cls, workdir: Path) -> Cluster:
        """The cluster recorded in ``workdir/cluster.json`` by an earlier command."""
        try:
            record = json.loads((workdir / "cluster.json").read_text())
        except FileNotFoundError:
            raise ClusterError(f"no cluster in {workdir} (start one first)") from None
        record["nodes"] = [Node(**node) for node in record["nodes"]]
        record["workdir"], record["bin_dir"] = Path(record["workdir"]), Path(record["bin_dir"])
        return cls(**record)

    def save(self) -> None:
        record = asdict(self)
        record["workdir"], record["bin_dir"] = str(self.workdir), str(self.bin_dir)
        path = self.workdir / "cluster.json"
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(json.dumps(record, indent=2))

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise ClusterError(f"no node {name!r} (the nodes are {', '.join(NODE_NAMES)})")

    def data_dir(self, node: Node) -> Path:
        return self.workdir / node.name / "data"

    def log(self, node: Node) -> Path:
        return self.workdir / f"{node.name}.log"

    # -- what the application connects with ----------------------------------------

    def urls(self, role: str = API_ROLE) -> dict[str, str]:
        """``DATABASE_URL`` (the primary, whichever node it is) and
        ``DATABASE_REPLICA_URLS`` (a standby, else the primary) for ``role``.

        ``connect_timeout`` bounds the wait for a host that does not answer at
        all (a machine gone, not just its PostgreSQL): libpq then tries the
        next host.
        """
        hosts = ",".join(node.host_port for node in self.nodes)
        base = f"postgresql://{role}:{self.passwords[role]}@{hosts}/{DATABASE}?connect_timeout=2"
        return {
            "DATABASE_URL": f"{base}&target_session_attrs=read-write",
            "DATABASE_REPLICA_URLS": f"{base}&target_session_attrs=prefer-standby",
        }

    def superuser_dsn(self, node: Node, dbname: str = "postgres") -> str:
        return (
            f"host={node.address} port={node.pg_port} user=postgres dbname={dbname} "
            f"password={self.passwords['superuser']} connect_timeout=3"
        )

    # -- processes -------------------------------------------------------------------

    def start(
        self, timeout: float = 120, *, statement_timeout_ms: int = 2000, lock_timeout_ms: int = 1500
    ) -> None:
        """Start etcd and every node that is not running; wait until the
        cluster has a leader and a synchronous standby; create the database
        and its roles the first time (the API's with these request timeouts:
        the settings' ``CRM_STATEMENT_TIMEOUT_MS`` and ``CRM_LOCK_TIMEOUT_MS``)."""
        _prepare_system_user(self.workdir)
        self.save()
        if not _alive(self.etcd_pid):
            self.etcd_pid = self._start_etcd()
            self.save()
        first = not (self.workdir / "bootstrapped").exists()
        for node in self.nodes:
            if not _alive(node.patroni_pid):
                node.patroni_pid = self._start_patroni(node)
                self.save()
                if first and node is self.nodes[0]:
                    # node1 initialises the cluster; the others copy it.
                    self.wait_for(lambda members: self._leader_of(members) is not None, timeout)
        self.wait_healthy(timeout)
        if first:
            self._create_database(
                statement_timeout_ms=statement_timeout_ms, lock_timeout_ms=lock_timeout_ms
            )
            (self.workdir / "bootstrapped").touch()

    def start_node(self, name: str) -> None:
        """Start a node's Patroni again (after :meth:`kill`): it rejoins as a standby."""
        node = self.node(name)
        if _alive(node.patroni_pid):
            return
        node.patroni_pid = self._start_patroni(node)
        self.save()

    def kill(self, name: str) -> None:
        """The node's machine dies: ``kill -9`` of its Patroni, then of its postmaster."""
        node = self.node(name)
        postmaster = _postmaster_pid(self.data_dir(node))
        for pid in (node.patroni_pid, postmaster):
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        node.patroni_pid = None
        self.save()

    def stop(self) -> None:
        """Stop every node (Patroni stops its PostgreSQL), then etcd; also what
        a killed node left behind."""
        for node in self.nodes:
            _terminate(node.patroni_pid, 60)
            node.patroni_pid = None
        for node in self.nodes:
            # A postmaster whose Patroni was killed has no one to stop it.
            _terminate(_postmaster_pid(self.data_dir(node)), 30)
        _terminate(self.etcd_pid, 15)
        self.etcd_pid = None
        self.save()

    def _start_etcd(self) -> int:
        """Start etcd; on ports taken since :func:`free_port` chose them (another
        process bound one in between), again on new ones, a few times."""
        for _ in range(3):
            try:
                return self._start_etcd_once()
            except PortTaken:
                # A fresh start: no member bootstrapped on the old ports, no old log.
                shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
                (self.workdir / "etcd.log").unlink(missing_ok=True)
                self.etcd_client_port = free_port("127.0.0.1")
                self.etcd_peer_port = free_port("127.0.0.1")
        return self._start_etcd_once()

    def _start_etcd_once(self) -> int:
        config = yaml.safe_load(ETCD_CONF.read_text())
        client = f"http://127.0.0.1:{self.etcd_client_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        config.update(
            {
                "data-dir": str(self.workdir / "etcd"),
                "listen-client-urls": client,
                "advertise-client-urls": client,
                "listen-peer-urls": peer,
                "initial-advertise-peer-urls": peer,
                "initial-cluster": f"{config['name']}={peer}",
            }
        )
        path = self.workdir / "etcd.yml"
        path.write_text(yaml.safe_dump(config))
        # Readable by etcd's system user whatever the umask it was written
        # under (no secret in it): in a full parallel test run, etcd once
        # could not open it ("permission denied").
        path.chmod(0o644)
        etcd = shutil.which("etcd") or "/usr/bin/etcd"
        if not Path(etcd).exists():
            raise ClusterError("etcd is not installed (apt-get install etcd-server)")
        process = _spawn([etcd, "--config-file", str(path)], self.workdir / "etcd.log", {})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log = self.workdir / "etcd.log"
                said = log.read_text(errors="replace")
                if "address already in use" in said:
                    raise PortTaken(log)
                last = "\n".join(said.splitlines()[-5:])
                raise ClusterError(f"etcd exited ({log}):\n{last}")
            if (get_json(f"{client}/health") or {}).get("health") == "true":
                return process.pid
            time.sleep(0.2)
        raise ClusterError(f"etcd did not become healthy within 30 s ({self.workdir / 'etcd.log'})")

    def patroni_environment(self, node: Node) -> dict[str, str]:
        """The variables that make ``patroni.yml`` this node's configuration."""
        node_dir = self.workdir / node.name
        return {
            "PATRONI_NAME": node.name,
            "PATRONI_RESTAPI_LISTEN": f"{node.address}:{node.api_port}",
            "PATRONI_RESTAPI_CONNECT_ADDRESS": f"{node.address}:{node.api_port}",
            "PATRONI_POSTGRESQL_LISTEN": node.host_port,
            "PATRONI_POSTGRESQL_CONNECT_ADDRESS": node.host_port,
            "PATRONI_POSTGRESQL_DATA_DIR": str(node_dir / "data"),
            "PATRONI_POSTGRESQL_BIN_DIR": str(self.bin_dir),
            "PATRONI_POSTGRESQL_PGPASS": str(node_dir / "pgpass"),
            "PATRONI_ETCD_HOSTS": f"127.0.0.1:{self.etcd_client_port}",
            "PATRONI_SUPERUSER_PASSWORD": self.passwords["superuser"],
            "PATRONI_REPLICATION_PASSWORD": self.passwords["replication"],
            "PATRONI_REWIND_PASSWORD": self.passwords["rewind"],
        }

    def _start_patroni(self, node: Node) -> int:
        (self.workdir / node.name).mkdir(exist_ok=True)
        _give_to_system_user(self.workdir / node.name)
        log = self.log(node)
        with log.open("a") as handle:
            handle.write(f"=== started by crm.postgres.ha_cluster at {time.time():.3f}\n")
        command = [sys.executable, "-m", "patroni", str(PATRONI_CONF)]
        return _spawn(command, log, self.patroni_environment(node)).pid

    # -- state -----------------------------------------------------------------------

    def members(self) -> list[dict[str, Any]]:
        """Patroni's view of the cluster (``GET /cluster`` of any node that answers)."""
        for node in self.nodes:
            answer = get_json(f"{node.api_url}/cluster")
            if answer is not None:
                return answer.get("members", [])
        return []

    @staticmethod
    def _leader_of(members: Sequence[Mapping[str, Any]]) -> str | None:
        for member in members:
            if member.get("role") == "leader" and member.get("state") == "running":
                return member["name"]
        return None

    def leader(self) -> str | None:
        """The node that is primary now (None while there is none)."""
        return self._leader_of(self.members())

    def is_healthy(self, members: Sequence[Mapping[str, Any]], expected: int | None = None) -> bool:
        """A running leader, a synchronous standby, every other member
        streaming from the leader, and ``expected`` members (default: every
        node whose Patroni runs)."""
        expected = (
            expected
            if expected is not None
            else sum(_alive(node.patroni_pid) for node in self.nodes)
        )
        leader = self._leader_of(members)
        if leader is None or len(members) != expected:
            return False
        standbys = [m for m in members if m["name"] != leader]
        return any(m.get("role") == "sync_standby" for m in standbys) and all(
            m.get("state") == "streaming" for m in standbys
        )

    def wait_healthy(self, timeout: float = 120, expected: int | None = None) -> list[dict]:
        return self.wait_for(lambda members: self.is_healthy(members, expected), timeout)

    def wait_for(self, condition, timeout: float) -> list[dict]:
        """Poll the members until ``condition(members)`` holds (ClusterError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        members: list[dict] = []
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.patroni_pid and not _alive(node.patroni_pid):
                    raise ClusterError(f"Patroni of {node.name} exited ({self.log(node)})")
            members = self.members()
            if condition(members):
                return members
            time.sleep(0.25)
        raise ClusterError(
            f"the cluster did not get there within {timeout:.0f} s: {json.dumps(members)} "
            f"(logs in {self.workdir})"
        )

    def rejoin_report(self, name: str) -> dict[str, bool]:
        """What the node's log says of its last start: whether it rewound its
        data folder, and whether it made a full copy (a base backup) instead."""
        text = self.log(self.node(name)).read_text(errors="replace")
        last = text.rsplit("=== started by crm.postgres.ha_cluster", 1)[-1]
        return {
            "rewound": "pg_rewind exit code=0" in last or "running pg_rewind from" in last,
            "full_copy": "replica has been created using basebackup" in last
            or "Removing data directory" in last,
        }

    # -- the application's database ------------------------------------------------

    def _create_database(
        self, *, statement_timeout_ms: int = 2000, lock_timeout_ms: int = 1500
    ) -> None:
        """The owner role and its database; the API's role with the request
        timeouts and the session settings on it (``database_role_settings``),
        and the rights on whatever the owner creates."""
        leader = self.node(self.leader() or self.nodes[0].name)
        owner, api = sql.Identifier(OWNER_ROLE), sql.Identifier(API_ROLE)
        with psycopg.connect(self.superuser_dsn(leader), autocommit=True) as conn:
            for role in (OWNER_ROLE, API_ROLE):
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(self.passwords[role])
                    )
                )
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(DATABASE), owner
            ))  # fmt: skip
        with psycopg.connect(self.superuser_dsn(leader, DATABASE), autocommit=True) as conn:
            statements = [
                sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(api),
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
                    "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
                ).format(owner, api),
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
                    "GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {}"
                ).format(owner, api),
                *role_settings_sql(
                    API_ROLE,
                    DATABASE,
                    statement_timeout_ms=statement_timeout_ms,
                    lock_timeout_ms=lock_timeout_ms,
                ),
            ]
            for statement in statements:
                conn.execute(statement)

    def write_probe(self) -> bool:
        """Whether the primary takes a write now (through the multi-host string)."""
        dsn = self.urls(OWNER_ROLE)["DATABASE_URL"]
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT txid_current()")
            return True
        except psycopg.Error:
            return False


@contextlib.contextmanager
def running_cluster(
    workdir: Path, bin_dir: Path, timeout: float = 180, **limits: int
) -> Iterator[Cluster]:
    """A new cluster in ``workdir``, stopped when the block ends (also on
    failure); ``limits``: the API role's timeouts (see :meth:`Cluster.start`)."""
    cluster = Cluster.create(workdir, bin_dir)
    try:
        cluster.start(timeout, **limits)
        yield cluster
    finally:
        cluster.stop()


def bin_dir_for(major: int) -> Path | None:
    """Where the PostgreSQL programs of ``major`` are: the embedded wheel's
    (18), or Debian's ``/usr/lib/postgresql/<major>/bin``; None if neither."""
    candidates = [Path(f"/usr/lib/postgresql/{major}/bin")]
    if str(major) == embedded.MAJOR_VERSION:
        candidates.insert(0, embedded.BIN_DIR)
    for candidate in candidates:
        if all((candidate / name).exists() for name in ("postgres", "pg_rewind", "initdb")):
            return candidate
    return None


class PortTaken(ClusterError):
    """A port chosen free was bound by another process before the server bound it."""


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


# -- processes, as the system user when we are root ------------------------------------


def _system_user() -> str | None:
    return embedded.SYSTEM_USER if os.geteuid() == 0 else None


def _prepare_system_user(workdir: Path) -> None:
    """As root: the system user exists, and may reach the cluster's folder,
    this Python and its packages (Patroni runs from them).

    The cluster's folder gets what the wheel gives a data folder (its parents
    readable and searchable by all); the interpreter only the right to pass
    through its parents (``o+x``, not to list them): a Python installed in
    root's home (pyenv) sits behind a ``/root`` of mode 700.
    """
    user = _system_user()
    if user is None:
        return
    embedded.wheel_utils.ensure_user_exists(user)
    embedded.wheel_utils.ensure_prefix_permissions(workdir)
    workdir.chmod(workdir.stat().st_mode | 0o055)
    _give_to_system_user(workdir)
    for path in (Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve()):
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
    if embedded.BIN_DIR.exists():
        readable = 0o044
        embedded.wheel_utils.ensure_folder_permissions(embedded.BIN_DIR, 0o011 | readable)
        embedded.wheel_utils.ensure_folder_permissions(embedded.BIN_DIR.parent / "lib", readable)
        embedded.wheel_utils.ensure_folder_permissions(embedded.BIN_DIR.parent / "share", readable)


def _give_to_system_user(path: Path) -> None:
    user = _system_user()
    if user is None:
        return
    import pwd

    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _spawn(command: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen:
    """A process in its own session (it outlives the command that started it),
    writing to ``log``, as the system user when we are root."""
    user = _system_user()
    # As the user with its own group alone: root's group would keep the
    # permissions of group root (none on a /root of mode 701).
    identity = {"user": user, "group": _group_of(user), "extra_groups": []} if user else {}
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PATRONI_", "PG"))},
        **env,
        "HOME": str(log.parent),
    }
    with log.open("a") as output:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=log.parent,
            start_new_session=True,
            **identity,
        )


def _group_of(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child, killed, not yet reaped) is not alive.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    return True


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, IndexError, ValueError):
        return None
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    return pid if name in {"postgres", "postmaster"} else None


def _terminate(pid: int | None, seconds: float) -> None:
    """SIGTERM, and SIGKILL after ``seconds``."""
    if not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def get_json(url: str, timeout: float = 2) -> Any:
    """The JSON of a 200 answer to ``GET url`` (etcd's, Patroni's REST API), or None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None
