"""A person erased on request: nothing of theirs left in the database (a
pg_dump of all of it holds none of their values), one event that they were,
everyone else's history untouched; only with the permission to erase."""

from __future__ import annotations

import subprocess

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test import Client

from core.models import AppUser, HistoryEvent, SearchTerm
from core.security.api_users import api_user_create
from crm.postgres.ha_cluster import bin_dir_for

URL = "/api/users/"

#: Values no generated customer has, so that a dump can be searched for them.
UNIQUE = {
    "first_name": "Zyxwerasa",
    "last_name": "Quorbleton",
    "customer_id": "ERASE-7f3c2a91",
    "email": "zyxwerasa.quorbleton@erasure.example",
    "phone_number": "+43 1 98765 43210",
    "street": "Vergessgasse",
    "new_street": "Loeschstrasse",
}


@pytest.fixture
def clients(settings):
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": None}
    privacy = ("view_history", "erase_appuser")
    officer = api_user_create(username="officer", read_only=False, granted=privacy)
    plain = api_user_create(username="plain", read_only=False)
    return (
        Client(headers={"authorization": f"Token {officer}"}),
        Client(headers={"authorization": f"Token {plain}"}),
    )


def create(client: Client, number: str, street: str, **fields) -> int:
    body = {
        "first_name": "Other",
        "last_name": "Person",
        "gender": "o",
        "customer_id": number,
        "phone_number": "+43 1 555",
        "address": {
            "street": street,
            "street_number": "3",
            "city_code": "1010",
            "city": "Vienna",
            "country": "Austria",
        },
        "relationship": {"points": 3},
        **fields,
    }
    response = client.post(URL, body, content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def the_person(client: Client) -> int:
    """The person to erase, with history: created, renamed, moved, scored."""
    pk = create(
        client,
        UNIQUE["customer_id"],
        UNIQUE["street"],
        first_name=UNIQUE["first_name"],
        last_name="Temporary",
        email=UNIQUE["email"],
        phone_number=UNIQUE["phone_number"],
    )
    for change in (
        {"last_name": UNIQUE["last_name"]},
        {"address": {"street": UNIQUE["new_street"]}},
        {"relationship": {"points": 99}},
    ):
        response = client.patch(f"{URL}{pk}/", change, content_type="application/json")
        assert response.status_code == 200, response.content
    return pk


def history_of(pk: int) -> list[tuple]:
    return list(
        HistoryEvent.objects.filter(customer_id=pk).order_by("id").values_list("kind", "changes")
    )


def dump() -> str:
    """Every row of the database, as pg_dump writes it."""
    params = connection.get_connection_params()
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        major = int(cursor.fetchone()[0]) // 10000
    program = bin_dir_for(major) / "pg_dump"
    command = [str(program), "--data-only", "--no-owner", "-d", params["dbname"]]
    command += ["-h", str(params.get("host") or "localhost"), "-U", params["user"]]
    if params.get("port"):
        command += ["-p", str(params["port"])]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


@pytest.mark.django_db(transaction=True)
def test_an_erased_person_is_in_no_row_of_the_database_and_others_are_untouched(clients):
    officer, _ = clients
    pk = the_person(officer)
    other = create(officer, "ERASE-OTHER", "Bleibgasse")
    officer.patch(f"{URL}{other}/", {"first_name": "Stays"}, content_type="application/json")
    others_history = history_of(other)
    LogEntry.objects.create(
        user_id=get_user_model().objects.get(username="officer").pk,
        content_type_id=ContentType.objects.get_for_model(AppUser).pk,
        object_id=str(pk),
        object_repr=f"{UNIQUE['first_name']} {UNIQUE['last_name']}",
        action_flag=CHANGE,
    )
    before = dump()
    assert all(value in before for value in UNIQUE.values())

    response = officer.post(f"{URL}{pk}/erase/")
    assert response.status_code == 200, response.content

    after = dump()
    assert [name for name, value in UNIQUE.items() if value in after] == []
    assert history_of(other) == others_history
    (erased,) = HistoryEvent.objects.filter(customer_id=pk)
    assert (erased.kind, erased.changes, erased.row_id) == ("E", {}, pk)
    assert erased.request_id == response["X-Request-ID"]
    assert get_user_model().objects.get(pk=erased.actor_id).username == "officer"
    assert officer.post(f"{URL}{pk}/erase/").status_code == 404


@pytest.mark.django_db
def test_a_shared_address_stays_for_those_who_live_there(clients):
    officer, _ = clients
    pk = the_person(officer)
    neighbour = create(officer, "ERASE-NEIGHBOUR", "Teilgasse")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE core_appuser SET address_id = (SELECT address_id FROM core_appuser "
            "WHERE id = %s) WHERE id = %s",
            [neighbour, pk],
        )
        cursor.execute(
            "UPDATE core_address SET city = 'Graz' WHERE id = "
            "(SELECT address_id FROM core_appuser WHERE id = %s)",
            [neighbour],
        )
    neighbours_history = history_of(neighbour)
    assert officer.post(f"{URL}{pk}/erase/").status_code == 200
    assert officer.get(f"{URL}{neighbour}/").json()["address"]["city"] == "Graz"
    assert history_of(neighbour) == neighbours_history


@pytest.mark.django_db
def test_known_values_only_the_person_held_are_forgotten(clients):
    officer, _ = clients
    pk = the_person(officer)
    create(officer, "ERASE-NAMESAKE", "Namensgasse", last_name="Person")
    assert SearchTerm.objects.filter(field="first_name", value=UNIQUE["first_name"]).exists()
    assert officer.post(f"{URL}{pk}/erase/").status_code == 200
    assert not SearchTerm.objects.filter(value=UNIQUE["first_name"]).exists()
    assert not SearchTerm.objects.filter(value=UNIQUE["last_name"]).exists()
    # Vienna and the other's last name are others' too.
    assert SearchTerm.objects.filter(field="city", value="Vienna").exists()
    assert SearchTerm.objects.filter(field="last_name", value="Person").exists()


@pytest.mark.django_db
def test_erasure_needs_its_own_permission(clients):
    officer, plain = clients
    pk = the_person(officer)
    assert plain.post(f"{URL}{pk}/erase/").status_code == 403
    assert plain.delete(f"{URL}{pk}/").status_code == 204  # deleting is not erasing
    assert Client().post(f"{URL}{pk}/erase/").status_code == 401
