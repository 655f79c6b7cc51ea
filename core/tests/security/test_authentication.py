"""Who may call the API: credentials everywhere under /api/, tokens, sessions."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create

URL = "/api/users/"


@pytest.fixture
def customers(db):

    customer_dataset_replace(n=120, chunk=60, seed=3)


@pytest.mark.django_db
@pytest.mark.parametrize("path", [URL, "/api/schema/", "/api/users/export/", "/api/users/1/"])
def test_every_api_endpoint_needs_credentials(path):
    assert Client().get(path).status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_the_documentation_pages_load_for_anyone_but_hold_no_schema(path):
    """They fetch the schema with the visitor's token or session (crm.api_docs)."""
    response = Client().get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assert "API token" in html, "the page asks for a token"
    assert "/admin/login/?next=" in html, "or offers to sign in"
    for secret in ("customers_list", "last_name", "/api/users/"):
        assert secret not in html


@pytest.mark.django_db
def test_a_wrong_token_is_refused():
    response = Client(headers={"authorization": "Token " + "0" * 40}).get(URL)
    assert response.status_code == 401


@pytest.mark.django_db
def test_session_login_works_for_the_browsable_api_and_docs(customers):
    user = get_user_model().objects.create_user("clerk", password="s3cret-pass-1")
    api_user_create(username="clerk", read_only=True)
    client = Client()
    assert client.login(username="clerk", password="s3cret-pass-1")
    assert client.get(URL, HTTP_ACCEPT="text/html").status_code == 200
    assert client.get("/api/docs/").status_code == 200
    assert user.has_perm("core.view_appuser")


@pytest.mark.django_db
def test_create_api_user_prints_a_working_token(customers, capsys):
    call_command("create_api_user", username="ops", read_only=True)
    token = capsys.readouterr().out.strip()
    assert Client(headers={"authorization": f"Token {token}"}).get(URL).status_code == 200
    ops = get_user_model().objects.get(username="ops")
    assert ops.has_perm("core.view_appuser")
    assert not ops.has_perm("core.change_appuser")
    assert not ops.has_usable_password()
    call_command("create_api_user", username="editor")
    editor = get_user_model().objects.get(username="editor")
    assert editor.has_perms(["core.add_appuser", "core.change_address", "core.delete_appuser"])


def test_swagger_ui_authorize_uses_the_token_scheme(reader):
    schema = json.loads(reader.get("/api/schema/?format=json").content)
    scheme = schema["components"]["securitySchemes"]["tokenAuth"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")
    assert {"tokenAuth": []} in schema["paths"]["/api/users/"]["get"]["security"]
