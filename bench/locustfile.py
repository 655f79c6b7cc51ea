"""The load generator's script for bench_http (run by locust in its own process).

The plan comes from the environment (``CRM_LOAD_PLAN``: JSON list of
``[weight, path, expected statuses]``), so that bench_http decides the mix
from the data it measured. A response with an unexpected status is a failure
named by its status, so 5xx responses can be counted apart.
"""

from __future__ import annotations

import json
import os
import random

from locust import FastHttpUser, constant, task

PLAN = json.loads(os.environ.get("CRM_LOAD_PLAN", "[]"))
WEIGHTS = [weight for weight, _, _ in PLAN]
HEADERS = {
    "Authorization": f"Token {os.environ.get('CRM_LOAD_TOKEN', '')}",
    # TLS ends at the proxy in production; this is what the proxy would say.
    "X-Forwarded-Proto": "https",
}


class ApiClient(FastHttpUser):
    wait_time = constant(0)

    @task
    def request(self) -> None:
        _, path, expected = random.choices(PLAN, weights=WEIGHTS)[0]
        name = path.split("?")[0] + ("?<invalid>" if 200 not in expected else "")
        with self.client.get(path, headers=HEADERS, name=name, catch_response=True) as response:
            if response.status_code in expected:
                response.success()
            else:
                response.failure(f"HTTP {response.status_code}")
