"""deploy/patroni/: each file loaded by its own program. etcd runs from a copy of
etcd.yml that differs in ports and folder only; Patroni validates patroni.yml
as each of the three nodes (its PATRONI_* variables) against that etcd; promtool
checks the alert rules, which use only metrics Patroni serves. (The failover
test runs the cluster from these very files: crm/tests/test_failover.py.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from crm.postgres import embedded, ha_cluster
from crm.tests.processes import needs_programs

RULES = ha_cluster.DEPLOY_DIR / "patroni-rules.yml"


@pytest.fixture
def cluster_with_etcd():
    """The cluster's layout with etcd alone running (in a folder of its own, see
    test_failover's workdir)."""
    workdir = Path(tempfile.mkdtemp(prefix="crm-patroni-files-"))
    cluster = ha_cluster.Cluster.create(workdir, embedded.BIN_DIR)
    try:
        ha_cluster._prepare_system_user(workdir)
        cluster.etcd_pid = cluster._start_etcd()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@needs_programs("etcd")
def test_patroni_accepts_the_file_as_each_node(cluster_with_etcd):
    for node in cluster_with_etcd.nodes:
        result = subprocess.run(
            [sys.executable, "-m", "patroni", "--validate-config", str(ha_cluster.PATRONI_CONF)],
            env={"PATH": "/usr/bin:/bin", **cluster_with_etcd.patroni_environment(node)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (node.name, result.stdout + result.stderr)


def test_the_file_asks_for_synchronous_replication_and_rewind():
    config = yaml.safe_load(ha_cluster.PATRONI_CONF.read_text())
    dcs = config["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is True
    assert dcs["postgresql"]["use_pg_rewind"] is True
    assert dcs["postgresql"]["parameters"]["wal_log_hints"] == "on"
    # Patroni's rule, which it would otherwise enforce by shortening loop_wait.
    assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]
    # The request timeouts belong to the API's role, never to the server's
    # configuration (they would cut Patroni's and the backups' sessions).
    for parameters in (dcs["postgresql"]["parameters"], config["postgresql"]["parameters"]):
        assert not {"statement_timeout", "lock_timeout"} & set(parameters)


def test_the_alerts_use_metrics_patroni_serves():
    import patroni.api

    served = set(re.findall(r"patroni_[a-z_]+", Path(patroni.api.__file__).read_text()))
    rules = yaml.safe_load(RULES.read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert len(expressions) >= 4
    used = {name for expr in expressions for name in re.findall(r"patroni_[a-z_]+", expr)}
    assert used <= served, used - served


@needs_programs("promtool")
def test_promtool_accepts_the_alert_rules():
    result = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
