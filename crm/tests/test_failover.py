"""Losing the primary loses nothing: a Patroni cluster (etcd, three PostgreSQL
nodes, synchronous replication) under the API's gunicorn, a writer and a reader,
then ``kill -9`` of the primary's Patroni and postmaster (bench/failover.py).

It runs on the PostgreSQL the suite runs on (the embedded 18, or the server
of ``DATABASE_URL``), with that version's programs: in CI the first pass's
18 (the second pass runs the tests of the project's SQL, not this one), and
takes about a minute: the cluster's start (15 s), migrate, the failover
itself (18 to 20 s: Patroni's leader key lives ``ttl`` = 20 s and is renewed
every ``loop_wait`` = 2 s, deploy/patroni/patroni.yml) and the old primary's
rejoin. The time is reported, never asserted; what is asserted is
correctness: no acknowledged write lost, no 500, nothing but JSON, no stale
read of one's own write, and a rejoin without a full copy.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from django.db import connection

from bench.failover import run_failovers
from crm.postgres import ha_cluster
from crm.tests.processes import needs_programs

pytestmark = [pytest.mark.django_db, needs_programs("etcd")]


@pytest.fixture
def bin_dir() -> object:
    """The programs of the PostgreSQL the suite runs on."""
    major = connection.pg_version // 10000
    found = ha_cluster.bin_dir_for(major)
    if found is None:
        pytest.fail(
            f"no PostgreSQL {major} programs with pg_rewind (apt-get install postgresql-{major})"
        )
    return found


@pytest.fixture
def workdir():
    """A folder of its own under /tmp, not pytest's: as root the cluster runs
    as another user, and every pytest run on the machine makes pytest's own
    folder (pytest-of-root) private again, shutting the cluster out of it."""
    path = Path(tempfile.mkdtemp(prefix="crm-failover-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_killing_the_primary_under_load_loses_no_acknowledged_write(workdir, bin_dir):
    result = run_failovers(workdir, bin_dir, failovers=1, customers=200, before=3, after=3)
    print("RESULT", json.dumps(result))  # the figures, in the test's output

    assert result["failovers"] == 1
    assert result["acknowledged_writes"] > 20, "the writer wrote before and after the kill"
    assert result["lost_writes"] == 0, result["lost"]
    assert result["server_errors"] == 0, result["errors_by_status"]
    assert result["non_json_answers"] == 0, result["errors_by_status"]
    assert set(result["errors_by_status"]) <= {"503"}, "a failover's answer is a 503"
    assert result["stale_own_reads"] == [], "read-your-writes holds across the switch"
    unresolved = [k for k in result["unknown_outcomes"] if "unresolved" in k]
    assert unresolved == [], result["unknown_outcomes"]
    ((old, new),) = result["primaries"]
    assert new not in (None, old), "a standby took over"
    (rejoin,) = result["rejoins"]
    assert rejoin == {"node": old, "rewound": rejoin["rewound"], "full_copy": False}
    assert result["reads_in_window"] > 0
