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


# -- tokens: hashed, expiring, rotated ------------------------------------------


def issue(capsys, *args: str) -> str:
    call_command("create_api_user", *args)
    return capsys.readouterr().out.strip()


def status_with(token: str) -> int:
    return Client(headers={"authorization": f"Token {token}"}).get(URL).status_code


@pytest.fixture
def no_token_cache(settings):
    settings.CRM_TOKEN_CACHE_SECONDS = 0


@pytest.mark.django_db
def test_tokens_are_stored_only_as_digests(customers, capsys):
    import hashlib

    from django.db import connection

    from core.models import ApiToken

    token = issue(capsys, "--username", "ops", "--read-only")
    assert status_with(token) == 200
    stored = ApiToken.objects.get(user__username="ops")
    assert stored.digest == hashlib.sha256(token.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM core_apitoken WHERE digest = %s", [token])
        assert cursor.fetchone()[0] == 0
    # A digest sent as a token is no token.
    assert status_with(stored.digest) == 401


@pytest.mark.django_db
def test_each_call_issues_a_new_token_and_rotate_revokes_the_earlier_ones(
    customers, capsys, no_token_cache
):
    first = issue(capsys, "--username", "sync")
    second = issue(capsys, "--username", "sync")
    assert first != second
    assert (status_with(first), status_with(second)) == (200, 200)
    rotated = issue(capsys, "--username", "sync", "--rotate")
    assert (status_with(first), status_with(second), status_with(rotated)) == (401, 401, 200)


@pytest.mark.django_db
def test_a_rotated_token_stops_working_within_the_cache_time(customers, capsys, settings):
    settings.CRM_TOKEN_CACHE_SECONDS = 30
    old = issue(capsys, "--username", "cached")
    assert status_with(old) == 200  # now cached
    issue(capsys, "--username", "cached", "--rotate")
    assert status_with(old) == 200, "still cached: the documented delay"
    from django.core.cache import cache

    cache.clear()  # what the passing of CRM_TOKEN_CACHE_SECONDS does
    assert status_with(old) == 401


@pytest.mark.django_db
def test_a_token_expires_after_its_lifetime_even_when_cached(customers, capsys, settings):
    import datetime as dt
    import time

    from django.utils import timezone

    from core.models import ApiToken

    settings.CRM_TOKEN_CACHE_SECONDS = 30
    token = issue(capsys, "--username", "temp", "--lifetime-days", "7")
    stored = ApiToken.objects.get(user__username="temp")
    assert dt.timedelta(days=6, hours=23) < stored.expires - timezone.now() <= dt.timedelta(days=7)
    ApiToken.objects.filter(pk=stored.pk).update(expires=timezone.now() + dt.timedelta(seconds=1))
    from django.core.cache import cache

    cache.clear()
    assert status_with(token) == 200  # cached, with its expiry
    time.sleep(1.1)
    response = Client(headers={"authorization": f"Token {token}"}).get(URL)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


@pytest.mark.django_db
def test_tokens_get_the_default_lifetime_when_one_is_set(customers, capsys, settings):
    from core.models import ApiToken

    settings.CRM_TOKEN_LIFETIME_DAYS = 0
    issue(capsys, "--username", "forever")
    assert ApiToken.objects.get(user__username="forever").expires is None
    settings.CRM_TOKEN_LIFETIME_DAYS = 90
    issue(capsys, "--username", "ninety")
    assert ApiToken.objects.get(user__username="ninety").expires is not None


@pytest.mark.django_db
@pytest.mark.parametrize("days", ["0", "-1", "40000"])
def test_create_api_user_refuses_a_nonsense_lifetime(days):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--lifetime-days"):
        call_command("create_api_user", "--username", "x", "--lifetime-days", days)


@pytest.mark.django_db(transaction=True)
def test_a_new_token_works_at_once_when_reads_go_to_a_replica(customers, monkeypatch):
    """Tokens are read where they are written (the primary), not from a
    replica that may not have the new one yet."""
    from crm import replicas

    monkeypatch.setattr(replicas, "replica_aliases", lambda: ["replica_1"])
    monkeypatch.setattr(replicas, "replica_is_healthy", lambda alias: True)
    token = api_user_create(username="fresh", read_only=True)
    from core.security.authentication import CachedTokenAuthentication

    user, _ = CachedTokenAuthentication().authenticate_credentials(token)
    assert user.username == "fresh"


@pytest.mark.django_db
def test_plain_tokens_of_drf_authtoken_are_migrated_as_digests(customers):
    """What migration 0005 does to a database that had DRF's token table."""
    import hashlib
    import importlib

    from django.db import connection

    from core.models import ApiToken

    migration = importlib.import_module("core.migrations.0005_api_tokens")
    user = get_user_model().objects.create_user("legacy")
    api_user_create(username="legacy", read_only=True)
    ApiToken.objects.filter(user=user).delete()
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamptz NOT NULL, user_id integer NOT NULL)"
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, now(), %s)", ["a" * 40, user.pk])

    class SchemaEditor:
        pass

    editor = SchemaEditor()
    editor.connection = connection
    migration.hash_plain_tokens(None, editor)
    assert ApiToken.objects.filter(user=user, digest=hashlib.sha256(b"a" * 40).hexdigest()).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM authtoken_token")
        assert cursor.fetchone()[0] == 0
    assert status_with("a" * 40) == 200
