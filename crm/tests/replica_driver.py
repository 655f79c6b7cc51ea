"""The replicated pair's test, run in a process of its own.

``python -m crm.tests.replica_driver REPLICA_DIR`` with ``DATABASE_URL`` (the
primary) and ``DATABASE_REPLICA_URLS`` (the standby) set: Django reads its
databases once per process, so the pair needs a process whose settings name
them. It drives the API through Django's test client and prints one line,
``RESULT {json}``, that the test reads.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def served_by(client, url: str, **kwargs):
    """The response, and whether the page's own query ran on the replica."""
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connections["replica_1"]) as on_replica:
        response = client.get(url, **kwargs)
    # The page's own query, not the router's health check.
    return response, any("core_customer_list" in q["sql"] for q in on_replica.captured_queries)


def standby_metrics() -> dict:
    """What /metrics says of the standby and of the reads routed to it."""
    from prometheus_client import REGISTRY

    return {
        "in_use": REGISTRY.get_sample_value("crm_replica_in_use", {"database": "replica_1"}),
        "lag": REGISTRY.get_sample_value("crm_replica_lag_seconds", {"database": "replica_1"}),
        "reads": REGISTRY.get_sample_value(
            "crm_database_read_routing_total", {"database": "replica_1", "reason": "replica"}
        ),
    }


def main(replica_dir: Path) -> dict:
    from django.db import connections
    from django.test import Client

    from core.security.api_users import api_user_create
    from crm import replicas
    from crm.postgres import embedded

    out = {}
    token = api_user_create(username="replica-test", read_only=False)
    headers = {"authorization": f"Token {token}"}

    reader = Client(headers=headers)
    response, replica = served_by(reader, "/api/users/?page_size=5")
    with connections["replica_1"].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        out["replica_in_recovery"] = cursor.fetchone()[0]
    out["list"] = [response.status_code, replica]
    ready = reader.get("/readyz")
    out["ready_with_standby"] = [ready.status_code, ready.json().get("replicas")]
    out["standby_metrics"] = standby_metrics()

    writer = Client(headers=headers)
    body = {
        "first_name": "Rita",
        "last_name": "Replica",
        "gender": "f",
        "customer_id": "REP-1",
        "phone_number": "+43 1 000",
        "address": {
            "street": "A",
            "street_number": "1",
            "city_code": "1010",
            "city": "Vienna",
            "country": "Austria",
        },
    }
    created = writer.post("/api/users/", body, content_type="application/json")
    response, replica = served_by(writer, "/api/users/?customer_id=REP-1")
    out["read_your_write"] = [created.status_code, response.json()["count"], replica]

    deadline = time.monotonic() + 10
    while True:
        response, replica = served_by(reader, "/api/users/?customer_id=REP-1")
        if response.json()["count"] == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    out["replicated"] = [response.json()["count"], replica]

    embedded.stop(replica_dir)
    replicas.forget_health()
    response, replica = served_by(reader, "/api/users/?page_size=5")
    out["replica_down"] = [response.status_code, replica]
    ready = reader.get("/readyz")
    out["ready_standby_down"] = [ready.status_code, ready.json().get("replicas")]

    embedded.ensure_running(replica_dir, "crm", embedded.REPLICATION_TUNING)
    replicas.forget_health()
    deadline = time.monotonic() + 20
    while True:
        response, replica = served_by(reader, "/api/users/?page_size=5")
        if replica or time.monotonic() > deadline:
            break
        time.sleep(0.2)
        replicas.forget_health()
    out["replica_back"] = [response.status_code, replica]
    return out


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
    import django

    django.setup()
    print("RESULT " + json.dumps(main(Path(sys.argv[1]))))
