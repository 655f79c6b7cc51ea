"""Content negotiation on the list: JSON for what API clients send, the
browsable API for a browser, ``?format=`` over the Accept header, and a
clear 400 or 406 otherwise (core.api.renderers.StrictFormatNegotiation)."""

from __future__ import annotations

import pytest
from django.test import Client

from core.dataset.loader import customer_dataset_replace
from core.security.api_users import api_user_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader(db) -> Client:
    customer_dataset_replace(n=60, chunk=60, seed=3)
    token = api_user_create(username="negotiator", read_only=True)
    return Client(headers={"authorization": f"Token {token}"})


@pytest.mark.parametrize(
    "accept",
    [None, "*/*", "application/json", "application/json; indent=4", "application/*", "*/*;q=0.8"],
)
def test_what_api_clients_send_is_answered_in_json(reader, accept):
    headers = {} if accept is None else {"accept": accept}
    response = reader.get("/api/users/?page_size=2", headers=headers)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert len(response.json()["results"]) == 2


def test_an_indent_asked_for_is_honoured_and_the_same_json(reader):
    plain = reader.get("/api/users/?page_size=2&count=exact")
    indented = reader.get(
        "/api/users/?page_size=2&count=exact", headers={"accept": "application/json; indent=4"}
    )
    assert b"\n  " in indented.content
    assert b"\n" not in plain.content
    # The same page; its next cursor is sealed afresh each time (a new nonce).
    assert {**indented.json(), "next": None} == {**plain.json(), "next": None}


def test_a_browser_gets_the_browsable_api(reader):
    response = reader.get("/api/users/?page_size=2", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")


def test_format_wins_over_the_accept_header(reader):
    response = reader.get("/api/users/?page_size=2&format=json", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


def test_an_unknown_format_is_a_400_naming_the_parameter(reader):
    response = reader.get("/api/users/?format=xml")
    assert response.status_code == 400
    assert "format" in response.json()


def test_an_accept_header_naming_nothing_offered_is_a_406_saying_what_is(reader):
    response = reader.get("/api/users/", headers={"accept": "image/png"})
    assert response.status_code == 406
    assert "application/json" in response.json()["detail"]
