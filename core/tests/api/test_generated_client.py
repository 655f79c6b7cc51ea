"""A client generated from /api/schema/ with openapi-python-client works against a live server.

What a team integrating with this API would do, by the README's two steps
(its ``typed-client`` example, run here exactly as written): fetch the schema
with a token, generate a typed client from the file, and call it. Its write
modules must import (one JSON request body per write, not form variants that
cannot carry nested objects), its operations must be named consistently, and
list, cursor pages, create, a conditional patch and delete must round-trip.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create
from core.tests.test_readme_examples import README, readme_examples, runnable
from crm.tests.processes import REPO

#: The package the README says the steps make (openapi-python-client names it
#: after the schema's title), in the folder they write to.
PACKAGE = "crm_api_client"
OUTPUT = "crm-client"


def readme_steps() -> str:
    (example,) = [e for e in readme_examples(README.read_text()) if "typed-client" in e.tags]
    return example.body


@pytest.fixture
def generated(live_server, tmp_path, settings):
    """The client package the README's steps generate from the live server, imported."""
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": None}
    customer_dataset_replace(n=60, chunk=60, seed=5)
    token = api_user_create(username="integrator", read_only=False)
    result = subprocess.run(
        ["bash", "-c", f"set -eu\nT={token}\n{runnable(readme_steps(), live_server.url)}"],
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert json.loads((tmp_path / "crm-schema.json").read_text())["openapi"].startswith("3.")
    sys.path.insert(0, str(tmp_path / OUTPUT))
    try:
        client_module = importlib.import_module(PACKAGE)
        client = client_module.AuthenticatedClient(
            base_url=live_server.url, token=token, prefix="Token", raise_on_unexpected_status=True
        )
        # Closing the client closes its keep-alive connection, and with it the
        # server thread (and database session) that served it.
        with client:
            yield client, tmp_path / OUTPUT / PACKAGE
    finally:
        sys.path.remove(str(tmp_path / OUTPUT))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_the_schema_cannot_be_fetched_without_the_token(live_server):
    """Why the README's steps are two: ``generate --url`` sends no token."""
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{live_server.url}/api/schema/?format=json", timeout=30)
    assert refused.value.code == 401


def operations(package: Path) -> set[str]:
    return {path.stem for path in (package / "api").rglob("*.py") if path.stem != "__init__"}


def test_the_generated_client_lists_pages_creates_patches_and_deletes(generated):
    client, package = generated
    assert operations(package) == {
        "customers_list",
        "customers_create",
        "customers_retrieve",
        "customers_update",
        "customers_partial_update",
        "customers_destroy",
        "customers_export",
        "customers_import",
        "customers_bulk_update",
        "customers_history",
        "customers_personal_data",
        "customers_erase",
    }, "one naming scheme"
    api = importlib.import_module(f"{PACKAGE}.api.users")
    models = importlib.import_module(f"{PACKAGE}.models")
    list_, create, retrieve, patch, destroy = (
        importlib.import_module(f"{api.__name__}.{name}")
        for name in (
            "customers_list",
            "customers_create",
            "customers_retrieve",
            "customers_partial_update",
            "customers_destroy",
        )
    )

    # List, then follow the cursor to the second page.
    first = list_.sync(client=client, page_size=25, ordering="last_name")
    assert isinstance(first, models.CustomerPageSchema)
    assert len(first.results) == 25
    cursor = parse_qs(urlsplit(first.next_).query)["cursor"][0]
    second = list_.sync(client=client, page_size=25, ordering="last_name", cursor=cursor)
    assert not {c.id for c in first.results} & {c.id for c in second.results}
    assert [c.last_name for c in first.results + second.results] == sorted(
        c.last_name for c in first.results + second.results
    )
    invalid = list_.sync_detailed(client=client, page_size=1000)
    assert invalid.status_code == 400
    assert "page_size" in json.loads(invalid.content)

    # Create with the nested address and loyalty record.
    created = create.sync(
        client=client,
        body=models.CustomerWriteRequest(
            first_name="Anna",
            last_name="Huber",
            gender=models.GenderEnum.F,
            customer_id="GEN-1",
            phone_number="+43 1 234 5678",
            address=models.AddressWriteRequest(
                street="Neubaugasse",
                street_number="7",
                city_code="1070",
                city="Vienna",
                country="Austria",
            ),
            relationship=models.RelationshipWriteRequest(points=120),
        ),
    )
    assert isinstance(created, models.Customer), created
    assert (created.address.city, created.relationship.points) == ("Vienna", 120)

    # A conditional patch of one nested field, with the ETag just read.
    read = retrieve.sync_detailed(id=created.id, client=client)
    etag = read.headers["ETag"]
    patched = patch.sync(
        id=created.id,
        client=client,
        if_match=etag,
        body=models.PatchedCustomerWriteRequest(
            address=models.PatchedAddressWriteRequest(street="Ringstraße")
        ),
    )
    assert isinstance(patched, models.Customer), patched
    assert (patched.address.street, patched.address.city) == ("Ringstraße", "Vienna")
    stale = patch.sync_detailed(
        id=created.id,
        client=client,
        if_match=etag,
        body=models.PatchedCustomerWriteRequest(first_name="Stale"),
    )
    assert stale.status_code == 412

    assert destroy.sync_detailed(id=created.id, client=client).status_code == 204
    assert retrieve.sync_detailed(id=created.id, client=client).status_code == 404
