"""``python manage.py bench_failover``: kill the primary of a Patroni cluster under load, N times.

Starts and stops its own cluster (etcd and three Patroni nodes, see
``crm.postgres.ha_cluster``; ``pip install -e '.[ha]'`` and Debian's
``etcd-server``), the API's gunicorn on it, a writer and a reader
(bench/failover.py). Each failover is a ``kill -9`` of the primary's Patroni
and postmaster; the old primary is then started again, rejoins as a standby
(pg_rewind), and the next failover kills the new primary. Prints one JSON
object as its last line; with ``--output docs/benchmarks/failover`` (from a
committed checkout) publishes the run.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench.failover import run_failovers, targets
from core import run_records
from crm.postgres import ha_cluster

COLUMNS = [
    "minute",
    "git_commit",
    "postgresql",
    "customers",
    "failovers",
    "acknowledged_writes",
    "lost_writes",
    "write_downtime_s",
    "write_downtime_each_s",
    "read_success_share",
    "reads_in_window",
    "errors_by_status",
    "non_json_answers",
    "server_errors",
    "stale_own_reads",
    "unknown_outcomes",
    "rejoined_by_rewind",
    "full_copies",
    "command",
]


class Command(BaseCommand):
    help = (
        "Start a Patroni cluster (etcd, three PostgreSQL nodes), serve the API on it, "
        "write and read under load, kill -9 the primary N times (the old one rejoins "
        "between kills); print what every write and read saw as one JSON line."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--failovers", type=int, default=5, help="kills of the primary")
        parser.add_argument("--customers", type=int, default=10_000, help="customers loaded first")
        parser.add_argument(
            "--postgresql",
            type=int,
            default=int(ha_cluster.embedded.MAJOR_VERSION),
            help="the major version to run (18: the embedded wheel's programs; "
            "others: Debian's /usr/lib/postgresql/N/bin)",
        )
        parser.add_argument(
            "--before", type=float, default=10, help="seconds of load before each kill"
        )
        parser.add_argument(
            "--after",
            type=float,
            default=10,
            help="seconds of load after a failover's first write, before the old primary "
            "is started again",
        )
        parser.add_argument(
            "--output",
            type=Path,
            default=None,
            help="where failover.csv and failover.md go (default: CRM_REPORTS_DIR; "
            "docs/benchmarks/failover to publish)",
        )

    def handle(self, *args, failovers: int, customers: int, postgresql: int, **options) -> None:
        if failovers < 1:
            raise CommandError("--failovers must be at least 1")
        bin_dir = ha_cluster.bin_dir_for(postgresql)
        if bin_dir is None:
            raise CommandError(
                f"no PostgreSQL {postgresql} programs (apt-get install postgresql-{postgresql})"
            )
        if shutil.which("etcd") is None:
            raise CommandError("etcd is not installed (apt-get install etcd-server)")
        output = run_records.reports_dir(
            options["output"] or Path(settings.CRM_REPORTS_DIR) / "failover"
        )
        workdir = Path(tempfile.mkdtemp(prefix="crm-bench-failover-"))
        try:
            result = run_failovers(
                workdir,
                bin_dir,
                failovers=failovers,
                customers=customers,
                before=options["before"],
                after=options["after"],
                progress=self.stdout.write,
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        result["targets"] = targets(result)
        write_records(output, result, customers)
        for name, met in result["targets"].items():
            self.stdout.write(f"{'met    ' if met else 'NOT MET'}  {name}")
        self.stdout.write(json.dumps(result))


def write_records(output: Path, result: dict, customers: int) -> None:
    """A row of failover.csv, and failover.md: the latest run, failover by failover."""
    commit = run_records.git_commit()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%MZ")
    run_records.append_csv(
        output / "failover.csv",
        COLUMNS,
        {
            "minute": stamp,
            "git_commit": commit,
            "customers": customers,
            "rejoined_by_rewind": sum(j["rewound"] for j in result["rejoins"]),
            "full_copies": sum(j["full_copy"] for j in result["rejoins"]),
            "command": run_records.command_line(),
            **{
                name: json.dumps(result[name])
                if isinstance(result[name], list | dict)
                else result[name]
                for name in COLUMNS
                if name in result
            },
        },
    )
    lines = [
        f"# bench_failover: {result['failovers']} failovers under load",
        "",
        f"PostgreSQL {result['postgresql']} under Patroni (deploy/patroni/), commit `{commit}`, "
        f"{stamp}, {customers:,} customers; `{run_records.command_line()}`.",
        "",
        "| failover | killed (Patroni and postmaster) | new primary | kill to first write (s) | "
        "old primary rejoined | by pg_rewind | full copy |",
        "|---:|---|---|---:|---|---|---|",
    ]
    for number, ((old, new), downtime, rejoin) in enumerate(
        zip(result["primaries"], result["write_downtime_each_s"], result["rejoins"], strict=False),
        1,
    ):
        lines.append(
            f"| {number} | {old} | {new} | {downtime:.2f} | yes | "
            f"{'yes' if rejoin['rewound'] else 'no (not needed)'} | "
            f"{'yes' if rejoin['full_copy'] else 'no'} |"
        )
    lines += [
        "",
        f"* acknowledged writes: {result['acknowledged_writes']:,}; lost: {result['lost_writes']}",
        f"* reads during the windows: {result['reads_in_window']:,}, "
        f"{result['read_success_share']:.1%} succeeded",
        f"* answers that were not 2xx, by status: {result['errors_by_status']} "
        f"(of {result['answers']:,}); 500s: {result['server_errors']}, "
        f"not JSON: {result['non_json_answers']}",
        f"* writes whose outcome the client could not know, settled afterwards: "
        f"{result['unknown_outcomes']}",
        f"* stale reads of one's own write: {len(result['stale_own_reads'])}",
        "",
        "| target | |",
        "|---|---|",
        *(
            f"| {name} | {'met' if met else '**not met**'} |"
            for name, met in result["targets"].items()
        ),
        "",
    ]
    (output / "failover.md").write_text("\n".join(lines), encoding="utf-8")
