"""Logs: the request log's fields, text and JSON, and no personal data in any line."""

from __future__ import annotations

import json
import logging
from urllib.parse import quote, urlencode

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from bench import servers
from core.api.params import EXPORT_PARAMETERS, LIST_PARAMETERS
from core.customers import selectors
from core.security.api_users import api_user_create
from core.tests.clients import api_client
from crm.observability import logs
from crm.observability.context import RequestContext, bind, unbind
from crm.tests.http_client import call
from crm.tests.processes import needs_programs

NAME = "Quaxelrod"
FIRST = "Zenobia"


CUSTOMER = {
    "first_name": FIRST,
    "last_name": NAME,
    "gender": "f",
    "customer_id": "PII-1",
    "phone_number": "+43 1 555 0123",
    "address": {
        "street": "Ringstraße",
        "street_number": "1",
        "city_code": "1010",
        "city": "Vienna",
        "country": "Austria",
    },
    "relationship": {"points": 100},
}


def write(body: dict, method: str = "post", path: str = "/api/users/"):
    client = api_client("pii-writer", read_only=False)
    return getattr(client, method)(path, body, content_type="application/json")


@pytest.fixture
def customer(db) -> int:
    response = write(CUSTOMER)
    assert response.status_code == 201
    return response.json()["id"]


@pytest.mark.django_db
def test_json_lines_carry_the_requests_fields(log_output, customer):
    output = log_output("json")
    client = api_client()
    response = client.get(f"/api/users/?last_name={NAME}&page_size=5")
    assert response.status_code == 200
    (line,) = output.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "INFO"
    assert record["logger"] == "crm.requests"
    assert record["timestamp"].endswith("+00:00")
    assert record["request_id"] == response["X-Request-ID"]
    assert record["method"] == "GET"
    assert record["path"] == "/api/users/"
    assert record["route"] == "/api/users/"
    assert record["params"] == ["last_name", "page_size"]
    assert record["status"] == 200
    assert record["duration_ms"] > record["db_ms"] > 0
    assert record["queries"] >= 1
    assert record["user_id"] == response.wsgi_request.user.pk


@pytest.mark.django_db
def test_text_lines_are_for_people(log_output, customer):
    output = log_output("text")
    response = api_client().get(f"/api/users/?last_name={NAME}")
    (line,) = output.getvalue().splitlines()
    assert (
        f"INFO crm.requests [{response['X-Request-ID']}] GET /api/users/?last_name=* 200 " in line
    )
    assert " ms (db " in line


@pytest.mark.django_db
def test_the_request_log_is_off_unless_asked_for(log_output, customer):
    output = log_output("text", request_log=False)
    api_client().get("/api/users/")
    assert output.getvalue() == ""


def string_parameters(parameters) -> list[str]:
    """Every parameter that takes free text (where a name could be typed)."""
    return [
        name
        for name in sorted(parameters.allowed)
        if name not in {"ordering", "order_by", "count", "format", "page", "page_size", "cursor"}
    ]


def pii_requests() -> list[tuple[str, str]]:
    """A customer's name in every parameter of every read endpoint, in valid and
    invalid requests (each answer path logs differently)."""
    requests = []
    for path, parameters in (
        ("/api/users/", LIST_PARAMETERS),
        ("/api/users/export/", EXPORT_PARAMETERS),
    ):
        for name in string_parameters(parameters):
            requests.append((path, urlencode({name: NAME})))  # 200, or a 400 for a number
            requests.append((path, urlencode({name: f"{FIRST} {NAME}"})))
            requests.append((path, urlencode({name: NAME, "nonsense": NAME})))  # 400
    requests += [
        ("/api/users/", urlencode({"last_name": NAME, "page": 99})),  # 404 past the end
        ("/api/users/", urlencode({"search": f"{FIRST.lower()} {NAME.lower()}"})),
        ("/api/users/no-such-thing/", urlencode({"last_name": NAME})),  # unrouted 404
        ("/api/users/", f"last_name={NAME}&last_name={NAME}"),  # repeated
        ("/api/users/", f"last_name=%{NAME}"),  # malformed escape
    ]
    return requests


@pytest.mark.django_db
@pytest.mark.parametrize("format", ["text", "json"])
def test_a_customers_name_in_a_filter_never_reaches_a_log_line(log_output, customer, format):
    output = log_output(format)
    client = api_client()
    anonymous = Client()
    statuses = set()
    for path, query in pii_requests():
        for who in (client, anonymous):  # the anonymous one gets a 401
            response = who.get(f"{path}?{query}")
            # An export streams from an open COPY: read it to the end (the test
            # client then closes it), as a server would, before the next request
            # uses the connection.
            b"".join(getattr(response, "streaming_content", []))
            statuses.add(response.status_code)
    # Writes carry the name in their body: a conflict, an invalid field, a change.
    statuses.add(write(CUSTOMER).status_code)  # customer_id taken: 400
    statuses.add(write({**CUSTOMER, "customer_id": "PII-2", "gender": NAME}).status_code)
    statuses.add(write({"first_name": NAME}, "patch", f"/api/users/{customer}/").status_code)
    assert {200, 400, 401, 404} <= statuses
    text = output.getvalue()
    assert "Bad Request: /api/users/" in text, "Django's own warnings were written"
    assert "Unauthorized: /api/users/" in text
    assert NAME.lower() not in text.lower()
    assert FIRST.lower() not in text.lower()


@pytest.mark.django_db
def test_a_crash_with_the_name_in_its_message_is_logged_without_it(
    log_output, customer, monkeypatch
):
    """A 500 logs a traceback; the exception's message may quote the request."""

    def crash(*, filters, **kwargs):
        raise ValueError(f"cannot filter on {filters}")

    monkeypatch.setattr(selectors, "customer_list", crash)
    output = log_output("json")
    client = api_client()
    client.raise_request_exception = False
    assert client.get(f"/api/users/?last_name={NAME}").status_code == 500
    text = output.getvalue()
    assert "Internal Server Error: /api/users/" in text
    assert "ValueError: cannot filter on" in text
    assert NAME not in text


def test_runservers_request_lines_are_masked(log_output):
    output = log_output("text")
    logging.getLogger("django.server").warning(
        '"%s" %s %s', f"GET /api/users/?last_name={NAME}&page=2 HTTP/1.1", "400", "12"
    )
    line = output.getvalue()
    assert '"GET /api/users/?last_name=*&page=* HTTP/1.1" 400 12' in line


def test_a_malformed_log_call_does_not_leak_its_arguments(log_output):
    output = log_output("text")
    logging.getLogger("crm.test").warning("one placeholder %s", NAME, "two arguments")
    assert NAME not in output.getvalue()


values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="*", exclude_categories=["Cs"]),
    min_size=2,
    max_size=20,
)


@given(query=st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), values, max_size=4))
def test_masking_removes_every_value_of_the_requests_query(query):
    """Whatever the values, neither their raw nor their decoded form survives in
    a message or a traceback written during the request."""
    from django.test import RequestFactory

    encoded = urlencode(query)
    request = RequestFactory().get(f"/api/users/?{encoded}")
    bind(RequestContext("t", request))
    try:
        secrets = logs.request_values(RequestContext("t", request))
        message = f"lookup failed for {list(query.values())} in GET /api/users/?{encoded}"
        masked = logs.mask(message, secrets)
    finally:
        unbind()
    for value in query.values():
        assert value not in masked


# -- forged lines, on real processes: gunicorn behind the project's nginx -------

FORGED = "2026-12-03 23:12:30,000 INFO crm.requests [0] DELETE /api/users/17/ 204 1.00 ms user 1"
#: Each a request that writes the forged line after a newline, if unescaped:
#: in the path, in a parameter's name, with a carriage return, by a 404.
FORGERIES = [
    "/healthzz%0A" + quote(FORGED),
    "/api/users/?page%0A" + quote(FORGED, safe="") + "=1",
    "/api/users/%0D%0A" + quote(FORGED),
    "/nowhere%0A" + quote(FORGED),
]


@pytest.mark.django_db(transaction=True)
@needs_programs("nginx")
@pytest.mark.parametrize("format", ["text", "json"])
def test_no_request_writes_a_line_of_its_own_into_any_log(tmp_path, format):
    token = api_user_create(username="forger", read_only=True)
    with servers.serving_stack(
        tmp_path,
        secret_key="f" * 64,
        token=token,
        workers=2,
        extra_env={"DJANGO_LOG_FORMAT": format, "DJANGO_LOG_LEVEL": "INFO"},
    ) as stack:
        for path in FORGERIES:
            assert call(stack.url, path, token=token).status in {400, 404}
    application = (tmp_path / "gunicorn.out").read_text().splitlines()
    proxy = (tmp_path / "access.log").read_text().splitlines()
    assert sum("DELETE /api/users/17/" in line for line in application) >= len(FORGERIES)
    for line in application + proxy:
        assert not line.startswith(FORGED[:10]), line
    if format == "json":
        records = [json.loads(line) for line in application]
        assert sum(FORGED in r["message"] for r in records) >= len(FORGERIES)
    else:
        assert all(line[:1] in "0123456789 " for line in application), "a record or its traceback"
