"""``python manage.py ha_cluster start|status|kill|stop``: a Patroni cluster to try on one machine.

``start`` runs etcd and three PostgreSQL nodes under Patroni from the files in
``deploy/patroni/`` (see :mod:`crm.postgres.ha_cluster`), creates the
database and its roles, and prints the connection strings; again after a
``kill``, it starts whatever is not running (the killed node rejoins as a
standby). ``kill`` is a machine dying: ``kill -9`` of a node's Patroni and
postmaster (the primary's by default). Needs ``pip install -e '.[ha]'``
(``make`` installs it) and Debian's ``etcd-server``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from crm.errors import SetupError
from crm.postgres import embedded, ha_cluster


class Command(BaseCommand):
    help = (
        "Start, show, kill a node of, or stop a Patroni cluster (etcd and three PostgreSQL "
        "nodes with synchronous replication) on this machine, for trying failover."
    )
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "action", choices=["start", "status", "kill", "stop"], nargs="?", default="status"
        )
        parser.add_argument(
            "node", nargs="?", default=None, help="kill: node1, node2 or node3 (the primary)"
        )
        parser.add_argument(
            "--dir",
            type=Path,
            default=Path(settings.BASE_DIR) / ".pgcluster",
            help="the cluster's folder (data, logs, passwords); default .pgcluster/",
        )
        parser.add_argument(
            "--postgresql",
            type=int,
            default=int(embedded.MAJOR_VERSION),
            help="start: the major version (18: the embedded wheel's programs; "
            "others: Debian's /usr/lib/postgresql/N/bin)",
        )
        parser.add_argument(
            "--port",
            type=int,
            default=5432,
            help="start: each node's PostgreSQL port on its own address (0: any free port)",
        )

    def handle(self, *args, action: str, node: str | None, **options) -> None:
        folder = options["dir"].resolve()
        try:
            if action == "start":
                cluster = self.start(folder, options["postgresql"], options["port"])
            else:
                cluster = ha_cluster.Cluster.load(folder)
                if action == "kill":
                    victim = node or cluster.leader()
                    if victim is None:
                        raise CommandError("the cluster has no primary to kill")
                    cluster.kill(victim)
                    self.stdout.write(f"killed {victim} (Patroni and postmaster, kill -9)")
                    return
                if action == "stop":
                    cluster.stop()
                    self.stdout.write("stopped")
                    return
        except SetupError as exc:
            raise CommandError(str(exc)) from exc
        self.show(cluster)

    def start(self, folder: Path, major: int, port: int) -> ha_cluster.Cluster:
        if shutil.which("etcd") is None and not Path("/usr/bin/etcd").exists():
            raise CommandError("etcd is not installed (apt-get install etcd-server)")
        if (folder / "cluster.json").exists():
            cluster = ha_cluster.Cluster.load(folder)
        else:
            bin_dir = ha_cluster.bin_dir_for(major)
            if bin_dir is None:
                raise CommandError(
                    f"no PostgreSQL {major} programs (apt-get install postgresql-{major})"
                )
            cluster = ha_cluster.Cluster.create(folder, bin_dir, pg_port=port)
        self.stdout.write(f"starting etcd and {len(cluster.nodes)} nodes in {folder} …")
        cluster.start(
            statement_timeout_ms=settings.CRM_STATEMENT_TIMEOUT_MS,
            lock_timeout_ms=settings.CRM_LOCK_TIMEOUT_MS,
        )
        return cluster

    def show(self, cluster: ha_cluster.Cluster) -> None:
        members = {member["name"]: member for member in cluster.members()}
        self.stdout.write(f"folder: {cluster.workdir} (logs: nodeN.log, etcd.log)")
        for node in cluster.nodes:
            member = members.get(node.name, {})
            role = member.get("role", "down")
            state = member.get("state", "")
            lag = f", lag {member['lag']} bytes" if "lag" in member else ""
            self.stdout.write(
                f"  {node.name}  {node.host_port:<22} {role:<13} {state}{lag}  "
                f"REST {node.api_url}/patroni"
            )
        owner = cluster.urls(ha_cluster.OWNER_ROLE)
        api = cluster.urls(ha_cluster.API_ROLE)
        self.stdout.write("")
        self.stdout.write("migrate and generate_data (as the tables' owner):")
        self.stdout.write(f"  DATABASE_URL='{owner['DATABASE_URL']}'")
        self.stdout.write("the API (its own role, with the request timeouts on it):")
        self.stdout.write(f"  DATABASE_URL='{api['DATABASE_URL']}'")
        self.stdout.write(f"  DATABASE_REPLICA_URLS='{api['DATABASE_REPLICA_URLS']}'")
        self.stdout.write("")
        self.stdout.write("kill the primary's machine: python manage.py ha_cluster kill")
