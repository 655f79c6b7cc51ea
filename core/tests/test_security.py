"""Who may read customers, resource limits, production settings and hostile input."""

from __future__ import annotations

import itertools
import json
import secrets
import threading
from urllib.parse import quote

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test import Client
from rest_framework.authtoken.models import Token

from core.filters import CustomerFilter
from core.services import api_user_create

from .conftest import api_client, manage

URL = "/api/users/"


@pytest.fixture
def customers(db):
    from core.services import customer_dataset_replace

    customer_dataset_replace(n=120, chunk=60, seed=3)


# -- authentication and permissions --------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", [URL, "/api/schema/", "/api/docs/", "/api/redoc/"])
def test_every_api_endpoint_needs_credentials(path):
    assert Client().get(path).status_code == 401


@pytest.mark.django_db
def test_a_wrong_token_is_refused():
    response = Client(headers={"authorization": "Token " + "0" * 40}).get(URL)
    assert response.status_code == 401


@pytest.mark.django_db
def test_reading_customers_needs_the_view_permission(customers):
    nobody = get_user_model().objects.create_user("nobody")
    token = Token.objects.create(user=nobody)
    assert Client(headers={"authorization": f"Token {token.key}"}).get(URL).status_code == 403
    assert api_client("reader").get(URL).status_code == 200


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


# -- limits --------------------------------------------------------------------


@pytest.mark.django_db
def test_requests_beyond_the_rate_are_429_and_counted_per_user(customers, settings):
    settings.CRM_THROTTLE_RATES = {"anon": "2/minute", "user": "3/minute"}
    first, second = api_client("first"), api_client("second")
    assert [first.get(URL).status_code for _ in range(4)] == [200, 200, 200, 429]
    limited = first.get(URL)
    assert limited.status_code == 429
    assert 0 < int(limited["Retry-After"]) <= 60
    assert second.get(URL).status_code == 200, "another user has its own budget"


@pytest.mark.django_db
def test_anonymous_clients_are_throttled_per_ip_before_the_401(settings):
    settings.CRM_THROTTLE_RATES = {"anon": "2/minute", "user": None}
    client = Client(REMOTE_ADDR="203.0.113.9")
    assert [client.get(URL).status_code for _ in range(3)] == [401, 401, 429]
    assert Client(REMOTE_ADDR="203.0.113.10").get(URL).status_code == 401


@pytest.mark.django_db
def test_throttle_counts_are_shared_by_every_process(customers, settings):
    """The counter lives in PostgreSQL: a request counted elsewhere counts here."""
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": "2/minute"}
    client = api_client("shared")
    user_id = get_user_model().objects.get(username="shared").pk
    with connection.cursor() as cursor:  # as another worker would have done
        cursor.execute(
            "INSERT INTO core_throttle_window VALUES (%s, to_timestamp(floor(extract(epoch "
            "FROM now()) / 60) * 60), 2)",
            [f"throttle_user_{user_id}"],
        )
    assert client.get(URL).status_code == 429


@pytest.mark.django_db(transaction=True)
def test_a_query_over_the_statement_timeout_is_a_json_503(settings):
    from core.services import customer_dataset_replace

    customer_dataset_replace(n=50, chunk=50)
    settings.CRM_STATEMENT_TIMEOUT_MS = 300
    client = api_client()
    client.get(URL)
    params = connection.get_connection_params()
    blocker = psycopg.connect(
        host=params["host"], port=params.get("port"), user=params["user"], dbname=params["dbname"]
    )
    try:
        # Another session holds the table: the list's query waits, and the
        # timeout cancels it.
        blocker.execute("LOCK TABLE core_appuser IN ACCESS EXCLUSIVE MODE")
        response = client.get(f"{URL}?count=none")
    finally:
        blocker.rollback()
        blocker.close()
    assert response.status_code == 503
    assert "longer than this server allows" in response.json()["detail"]
    assert response["Retry-After"] == "5"
    assert client.get(URL).status_code == 200, "the next request is served normally"


# -- production settings -------------------------------------------------------

PRODUCTION = {
    "CRM_ENV": "production",
    "DJANGO_ALLOWED_HOSTS": "crm.example.com",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
}


def test_check_deploy_is_clean_in_production_mode():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("DJANGO_SECRET_KEY", "DJANGO_SECRET_KEY must be set"),
        ("DJANGO_ALLOWED_HOSTS", "DJANGO_ALLOWED_HOSTS must list"),
    ],
)
def test_production_refuses_to_start_without(missing, message):
    result = manage("check", env={**PRODUCTION, missing: ""})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert message in result.stderr


# -- hostile input -------------------------------------------------------------

HOSTILE_VALUES = {
    "non-numeric": "abc",
    "negative": "-1",
    "zero": "0",
    "beyond 64 bits": "99999999999999999999999999",
    "float": "1.5",
    "exponent": "1e3",
    "very long": "x" * 100_000,
    "NUL byte": "a\x00b",
    "SQL": "'; DROP TABLE core_appuser; --",
    "percent": "%",
    "underscore": "_",
    "impossible date": "2023-02-30",
    "far date": "99999-01-01",
    "unicode": "Zoë 😀",
    "whitespace": "  ",
}
PARAMETERS = [
    *CustomerFilter.base_filters,
    "ordering",
    "order_by",
    "page",
    "page_size",
    "cursor",
    "count",
]


@pytest.mark.django_db
def test_hostile_values_for_every_parameter_never_reach_a_500(customers):
    client = api_client()
    tried = 0
    for parameter, (kind, value) in itertools.product(PARAMETERS, HOSTILE_VALUES.items()):
        response = client.get(f"{URL}?{parameter}={quote(value)}")
        tried += 1
        assert response.status_code in (200, 400, 404), (parameter, kind, response.status_code)
        body = response.content.decode()
        assert "Traceback" not in body
        assert 'File "' not in body
        if response.status_code == 400:
            assert parameter in response.json(), (parameter, kind, body[:300])
        if response.status_code == 200:
            assert "results" in response.json()
    assert tried == len(PARAMETERS) * len(HOSTILE_VALUES)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        "last_name=%ff%fe",  # invalid UTF-8
        "last_name=a&last_name=b",
        "page=1&page=2",
        "%ff=1",
        "last_name",
        "=x",
        "cursor=" + "A" * 1999,
    ],
)
def test_malformed_query_strings_are_a_400(customers, query):
    response = api_client().get(f"{URL}?{query}")
    assert response.status_code == 400, response.content
    assert "Traceback" not in response.content.decode()


@pytest.mark.django_db
def test_percent_and_underscore_values_match_literally_not_as_wildcards(customers):
    client = api_client()
    assert client.get(f"{URL}?last_name=%25").json()["results"] == []
    assert client.get(f"{URL}?first_name=_").json()["results"] == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_hostile_requests_leave_the_api_healthy():
    from core.services import customer_dataset_replace

    customer_dataset_replace(n=60, chunk=60)
    token = api_user_create(username="hostile", read_only=True)
    statuses: list[int] = []

    def attack() -> None:
        client = Client(headers={"authorization": f"Token {token}"})
        for value in HOSTILE_VALUES.values():
            statuses.append(client.get(f"{URL}?id={quote(value)}").status_code)
        from django.db import connections

        connections.close_all()

    threads = [threading.Thread(target=attack) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses
    assert set(statuses) <= {200, 400}
