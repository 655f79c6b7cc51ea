"""A fresh gunicorn worker: what it reads before its first request, and how
soon it sees a load that replaced the data (issue 33).

A real gunicorn with the project's configuration and production settings on
the tests' database; the data replaced by ``generate_data``'s own loader in
this process while gunicorn serves. What is asserted is behaviour (no request
read the planning sample; the counts are the new data's once the load has
returned); how long each step took is reported by the benchmarks, not here.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench import servers
from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create

pytestmark = pytest.mark.django_db(transaction=True)

WORKERS = 2
#: Exact counts up to this: above it the list's count is the planning
#: sample's estimate, which is what a stale sample gets wrong.
THRESHOLD = 100
BEFORE, AFTER = 3000, 1000
#: How long the new data's counts may take to show (the target is 1 s; the
#: bound is what a loaded CI machine may need, never the 300-s refresh).
SEEN_WITHIN = 20


def fetch(port: int, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def sample_reads(port: int) -> dict[str, float]:
    """The planning sample's reads, by reason, summed over every worker."""
    status, body = fetch(port, "/metrics")
    assert status == 200
    reads: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if (
                sample.name == "crm_process_state_reads_total"
                and sample.labels["name"] == "planning_sample"
            ):
                reason = sample.labels["reason"]
                reads[reason] = reads.get(reason, 0) + sample.value
    return reads


def test_fresh_workers_read_the_sample_before_serving_and_see_a_load_at_once(tmp_path, monkeypatch):
    customer_dataset_replace(n=BEFORE, chunk=1000)
    token = api_user_create(username="cold", read_only=True)
    api = {"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"}
    monkeypatch.setenv("CRM_EXACT_COUNT_THRESHOLD", str(THRESHOLD))
    port = servers.free_port()
    server = servers.gunicorn_alone(
        port, workers=WORKERS, secret_key="k" * 64, log=tmp_path / "gunicorn.log"
    )
    try:
        # Ready means every worker that answers holds its sample.
        servers.wait_ready(f"http://127.0.0.1:{port}/readyz", [server], {})
        servers.wait_workers_prepared(f"http://127.0.0.1:{port}", WORKERS, [server])
        status, body = fetch(port, "/readyz")
        assert json.loads(body)["planning_sample"] == {"status": "loaded"}

        counts = set()
        for _ in range(20):  # spread over the workers by the kernel
            status, body = fetch(port, "/api/users/?page_size=1", api)
            assert status == 200
            answer = json.loads(body)
            counts.add((answer["count"], answer["count_is_estimate"]))
        assert counts == {(BEFORE, True)}
        reads = sample_reads(port)
        assert reads.get("request", 0) == 0, f"a request read the sample: {reads}"
        assert reads["start"] == WORKERS

        customer_dataset_replace(n=AFTER, chunk=1000)
        loaded = time.monotonic()
        seen = 0
        while seen < 10:  # ten answers in a row: every worker has it
            status, body = fetch(port, "/api/users/?page_size=1", api)
            assert status == 200
            seen = seen + 1 if json.loads(body)["count"] == AFTER else 0
            assert time.monotonic() - loaded < SEEN_WITHIN, "the load's counts never showed"
            time.sleep(0.02)
        reads = sample_reads(port)
        assert reads["replaced"] >= WORKERS
        assert reads.get("request", 0) == 0
    finally:
        servers.stop(server)
