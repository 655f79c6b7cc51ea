"""The OpenAPI document and its pages: every parameter documented, served from local files."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.django_db


def test_schema_documents_every_parameter_and_validates(reader):
    from drf_spectacular.validation import validate_schema

    response = reader.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    validate_schema(schema)
    operation = schema["paths"]["/api/users/"]["get"]
    documented = {p["name"]: p for p in operation["parameters"]}
    from core.api.params import LIST_PARAMETERS
    from core.customers.filters import CustomerFilter

    expected = (set(LIST_PARAMETERS.control_names) - {"format"}) | set(CustomerFilter.base_filters)
    assert set(documented) == expected
    assert documented["page_size"]["schema"]["maximum"] == 500
    assert documented["last_name"]["schema"]["maxLength"] == 100
    assert documented["points_min"]["schema"]["maximum"] == 2**31 - 1
    assert set(operation["responses"]) == {"200", "400", "401", "403", "404", "429", "503"}


def test_every_operation_has_a_human_summary(reader):
    """ReDoc's menu and Swagger UI's rows show the summary, or else the raw
    operation id (``customers_partial_update``)."""
    schema = json.loads(reader.get("/api/schema/?format=json").content)
    operations = [
        (method.upper(), path, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]
    assert operations
    missing = [f"{method} {path}" for method, path, op in operations if not op.get("summary")]
    assert missing == [], f"operations without a summary: {missing}"
    summaries = [operation["summary"] for _, _, operation in operations]
    assert len(set(summaries)) == len(summaries), "each summary tells its operation apart"
    assert not [s for s in summaries if re.fullmatch(r"[a-z_]+", s)], "words, not an identifier"


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_load_only_local_assets(reader, page):
    response = reader.get(page)
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets
    assets.remove(f"/admin/login/?next={page}")  # the sign-in link
    assert all(re.match(r"/(static|api/redoc)/", asset) for asset in assets), assets
    assert "http://" not in html.replace("http://testserver", "")
    assert "https://" not in html
    # And whatever a bundle might still reach for by itself is refused.
    policy = response["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "http" not in policy


def test_the_redoc_page_loads_a_bundle_that_names_no_cdn(reader):
    """ReDoc's side menu fetches its logo from cdn.redoc.ly by itself: the
    bundle the page loads has that address taken out, so no request is tried."""
    html = reader.get("/api/redoc/").content.decode()
    (bundle_url,) = re.findall(r'<script src="([^"]+)"', html)
    response = reader.get(bundle_url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    bundle = b"".join(response).decode() if response.streaming else response.content.decode()
    assert "Redoc" in bundle, "the real bundle"
    assert "cdn.redoc.ly" not in bundle
    again = reader.get(bundle_url, headers={"If-None-Match": response["ETag"]})
    assert again.status_code == 304, "browsers keep it"


def test_the_token_scheme_comes_first_and_is_explained(reader):
    schema = json.loads(reader.get("/api/schema/?format=json").content)
    schemes = schema["components"]["securitySchemes"]
    assert list(schemes) == ["tokenAuth", "cookieAuth"]
    assert "Token <key>" in schemes["tokenAuth"]["description"]
    assert "/admin/" in schemes["cookieAuth"]["description"]


def test_no_bound_javascript_would_round(reader):
    """A JSON number past 2**53 is shown rounded in a browser (2**63 - 1 as
    9223372036854776000): the 64-bit limits are said by format int64 instead."""
    text = reader.get("/api/schema/?format=json").content.decode()
    numbers = [int(n) for n in re.findall(r"(?<![\w.])-?\d{16,}(?![\w.])", text)]
    assert all(abs(n) <= 2**53 for n in numbers), numbers
    schema = json.loads(text)
    (id_filter,) = [
        p for p in schema["paths"]["/api/users/"]["get"]["parameters"] if p["name"] == "id"
    ]
    assert id_filter["schema"]["format"] == "int64"
