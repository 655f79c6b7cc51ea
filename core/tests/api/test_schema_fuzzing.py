"""Schema-driven fuzzing: schemathesis generates requests from /api/schema/ and checks the answers.

Checks (schemathesis' defaults): no 5xx, every response matches its documented
schema, only documented status codes, the documented content type, invalid
input refused with a 4xx, and no access without credentials. Left out:
"positive data acceptance" (every schema-valid request gets a 2xx), because
some rules cannot be written in OpenAPI: a real calendar date, a cursor's
signature, a field named twice in an ordering. Those are 400s, as documented.

The operations are driven through Hypothesis directly: schemathesis' pytest
plugin does not run under pytest 9 yet.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create
from crm.wsgi import application

#: Generated requests per operation (positive and negative cases alike).
EXAMPLES = 150


@pytest.fixture
def token(transactional_db, settings) -> str:
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": None}
    customer_dataset_replace(n=200, chunk=100, seed=11)
    # Allowed to write too, so that creates, updates and deletes are fuzzed.
    return api_user_create(username="fuzzer", read_only=False)


def test_every_operation_conforms_to_its_schema(token, capsys):
    headers = {"Authorization": f"Token {token}"}
    schema = schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json", application, headers=headers
    )
    sent = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case) -> None:
            nonlocal sent
            sent += 1
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        fuzz()
    with capsys.disabled():
        print(f"\nschemathesis: {sent} generated requests over {len(operations)} operations")
    assert len(operations) >= 6
    assert sent >= len(operations) * 50
