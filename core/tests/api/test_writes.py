"""Customer detail and writes: nested address and loyalty record, one transaction, clear 400s."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from core.models import Address, AppUser, CustomerRelationship
from core.tests.clients import api_client

pytestmark = pytest.mark.django_db

URL = "/api/users/"


def payload(**changes) -> dict:
    body = {
        "first_name": "Anna",
        "last_name": "Huber",
        "gender": "f",
        "customer_id": "NEW-0001",
        "phone_number": "+43 1 234 5678",
        "birthday": "1984-05-17",
        "address": {
            "street": "Neubaugasse",
            "street_number": "7",
            "city_code": "1070",
            "city": "Vienna",
            "country": "Austria",
        },
        "relationship": {"points": 120},
    }
    body.update(changes)
    return body


@pytest.fixture
def editor():
    return api_client("editor", read_only=False)


def table_counts() -> tuple[int, int, int]:
    return (AppUser.objects.count(), Address.objects.count(), CustomerRelationship.objects.count())


def test_create_read_update_delete_round_trip(editor):
    created = editor.post(URL, payload(), content_type="application/json")
    assert created.status_code == 201, created.content
    body = created.json()
    pk = body["id"]
    assert body["address"]["city"] == "Vienna"
    assert body["relationship"]["points"] == 120
    assert editor.get(f"{URL}{pk}/").json() == body

    first_updated = AppUser.objects.get(pk=pk).last_updated
    patched = editor.patch(
        f"{URL}{pk}/",
        {"address": {"street": "Ringstraße"}, "relationship": {"points": 5}},
        content_type="application/json",
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["address"]["street"] == "Ringstraße"
    assert patched.json()["address"]["city"] == "Vienna", "partial: other fields kept"
    assert patched.json()["relationship"]["points"] == 5
    assert AppUser.objects.get(pk=pk).last_updated > first_updated

    replaced = editor.put(
        f"{URL}{pk}/",
        payload(first_name="Anne", customer_id="NEW-0001"),
        content_type="application/json",
    )
    assert replaced.status_code == 200, replaced.content
    assert replaced.json()["first_name"] == "Anne"

    assert editor.delete(f"{URL}{pk}/").status_code == 204
    assert editor.get(f"{URL}{pk}/").status_code == 404
    assert table_counts() == (0, 0, 0), "the record and the customer's own address go too"


def test_the_list_finds_a_created_customer(editor):
    editor.post(URL, payload(customer_id="FIND-ME"), content_type="application/json")
    results = editor.get(f"{URL}?customer_id=FIND-ME").json()["results"]
    assert [row["customer_id"] for row in results] == ["FIND-ME"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"gender": "x"}, "gender"),
        ({"birthday": (dt.date.today() + dt.timedelta(days=1)).isoformat()}, "birthday"),
        ({"birthday": "1899-12-31"}, "birthday"),
        ({"birthday": "2023-02-30"}, "birthday"),
        ({"first_name": "x" * 65}, "first_name"),
        ({"phone_number": "1" * 33}, "phone_number"),
        ({"customer_id": ""}, "customer_id"),
        ({"relationship": {"points": -1}}, "relationship"),
        ({"relationship": {"points": 2**31}}, "relationship"),
        ({"relationship": {"last_activity": "2001-01-01T00:00:00Z"}}, "relationship"),
        ({"address": {"city": "Vienna"}}, "address"),
        ({"address": None}, "address"),
    ],
)
def test_invalid_writes_are_a_400_naming_the_field_and_change_nothing(editor, changes, field):
    before = table_counts()
    response = editor.post(URL, payload(**changes), content_type="application/json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert table_counts() == before


def test_a_taken_customer_id_is_a_400_not_a_500(editor):
    assert editor.post(URL, payload(), content_type="application/json").status_code == 201
    again = editor.post(URL, payload(), content_type="application/json")
    assert again.status_code == 400
    assert "customer_id" in again.json()
    other = editor.post(URL, payload(customer_id="OTHER"), content_type="application/json")
    taken = editor.patch(
        f"{URL}{other.json()['id']}/", {"customer_id": "NEW-0001"}, content_type="application/json"
    )
    assert taken.status_code == 400
    assert table_counts() == (2, 2, 2)


def test_last_activity_is_bounded_by_the_record_and_now(editor):
    pk = editor.post(URL, payload(), content_type="application/json").json()["id"]
    record = CustomerRelationship.objects.get(pk=pk)

    def patch(value: str):
        return editor.patch(
            f"{URL}{pk}/",
            {"relationship": {"last_activity": value}},
            content_type="application/json",
        )

    assert patch((record.created - dt.timedelta(days=2)).isoformat()).status_code == 400
    for future in [
        "9999-12-31T00:00:00Z",
        "9999-12-31T23:59:59-12:00",  # past year 9999 once in UTC
        (timezone.now() + dt.timedelta(days=1)).isoformat(),
    ]:
        response = patch(future)
        assert response.status_code == 400, (future, response.content)
        assert "relationship" in response.json()
    assert patch(timezone.now().isoformat()).status_code == 200
    assert CustomerRelationship.objects.get(pk=pk).last_activity.year < 9999


def test_writes_need_the_write_permissions(editor):
    reader = api_client("reader", read_only=True)
    assert reader.post(URL, payload(), content_type="application/json").status_code == 403
    pk = editor.post(URL, payload(), content_type="application/json").json()["id"]
    assert (
        reader.patch(
            f"{URL}{pk}/", {"first_name": "X"}, content_type="application/json"
        ).status_code
        == 403
    )
    assert reader.delete(f"{URL}{pk}/").status_code == 403
    assert reader.get(f"{URL}{pk}/").status_code == 200


def test_an_unknown_customer_is_a_404(editor):
    assert editor.get(f"{URL}999999/").status_code == 404
    assert editor.patch(f"{URL}999999/", {}, content_type="application/json").status_code == 404
    assert editor.delete(f"{URL}999999/").status_code == 404


# -- what a write body may contain ---------------------------------------------


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"is_admin": True}, ["is_admin"]),
        ({"id": 1}, ["id"]),
        ({"created": "2020-01-01T00:00:00Z"}, ["created"]),
        ({"last_updated": "2020-01-01T00:00:00Z"}, ["last_updated"]),
        ({"frist_name": "Anna"}, ["frist_name"]),
        ({"address": {**payload()["address"], "zip": "1070"}}, ["address", "zip"]),
        (
            {"relationship": {"points": 1, "created": "2020-01-01T00:00:00Z"}},
            ["relationship", "created"],
        ),
        ({"relationship": {"point": 1}}, ["relationship", "point"]),
    ],
)
@pytest.mark.parametrize("method", ["post", "put", "patch"])
def test_unknown_and_read_only_fields_are_a_400_naming_them(editor, changes, path, method):
    pk = editor.post(URL, payload(customer_id="KEEP"), content_type="application/json").json()["id"]
    before = editor.get(f"{URL}{pk}/").json()
    url = URL if method == "post" else f"{URL}{pk}/"
    body = payload(**changes) if method != "patch" else changes
    response = getattr(editor, method)(url, body, content_type="application/json")
    assert response.status_code == 400, response.content
    errors = response.json()
    for key in path:
        errors = errors[key]
    assert isinstance(errors, list), response.json()
    assert errors
    assert table_counts() == (1, 1, 1)
    assert editor.get(f"{URL}{pk}/").json() == before


def test_an_unknown_field_is_named_with_the_other_errors(editor):
    response = editor.post(URL, payload(is_admin=True, gender="x"), content_type="application/json")
    assert response.status_code == 400
    assert set(response.json()) == {"is_admin", "gender"}
    assert "Allowed: first_name" in response.json()["is_admin"][0]


@pytest.mark.parametrize("method", ["post", "patch", "put"])
def test_a_deeply_nested_body_is_a_400_not_a_recursion_error(editor, method):
    pk = editor.post(URL, payload(), content_type="application/json").json()["id"]
    url = URL if method == "post" else f"{URL}{pk}/"
    response = getattr(editor, method)(url, "[" * 1000, content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    nested = '{"address": {"street": ' + "[" * 1000 + "]" * 1000 + "}}"
    assert getattr(editor, method)(url, nested, content_type="application/json").status_code == 400


@pytest.mark.parametrize("method", ["post", "patch"])
def test_a_body_over_the_upload_limit_is_a_json_413(editor, method, settings):
    pk = editor.post(URL, payload(), content_type="application/json").json()["id"]
    url = URL if method == "post" else f"{URL}{pk}/"
    body = '{"first_name": "' + "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1) + '"}'
    response = getattr(editor, method)(url, body, content_type="application/json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "The request body is too large."}


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
def test_writes_take_json_only(editor, content_type):
    response = editor.post(URL, "first_name=Anna", content_type=content_type)
    assert response.status_code == 415
    assert table_counts() == (0, 0, 0)


def test_writes_and_one_customer_take_no_query_parameters(editor):
    pk = editor.post(URL, payload(), content_type="application/json").json()["id"]
    response = editor.get(f"{URL}{pk}/?fields=id")
    assert response.status_code == 400
    assert "fields" in response.json()
    assert editor.delete(f"{URL}{pk}/?force=1").status_code == 400
    assert table_counts() == (1, 1, 1)


# -- caching and versions -------------------------------------------------------


def test_answers_with_personal_data_are_never_stored_by_caches(editor):
    created = editor.post(URL, payload(), content_type="application/json")
    pk = created.json()["id"]
    for response in [
        created,
        editor.get(URL),
        editor.get(f"{URL}{pk}/"),
        editor.patch(f"{URL}{pk}/", {"first_name": "X"}, content_type="application/json"),
        editor.get(f"{URL}999999/"),
    ]:
        assert "no-store" in response["Cache-Control"], response


def test_a_created_customer_is_at_its_location(editor):
    created = editor.post(URL, payload(), content_type="application/json")
    assert created.status_code == 201
    assert created["Location"] == f"http://testserver{URL}{created.json()['id']}/"
    assert editor.get(created["Location"]).json() == created.json()


def test_if_none_match_with_the_current_etag_is_a_304_without_a_body(editor):
    pk = editor.post(URL, payload(), content_type="application/json").json()["id"]
    etag = editor.get(f"{URL}{pk}/")["ETag"]
    for header in (etag, f"W/{etag}", f'"older", {etag}', "*"):
        unchanged = editor.get(f"{URL}{pk}/", HTTP_IF_NONE_MATCH=header)
        assert (unchanged.status_code, unchanged.content) == (304, b""), header
        assert unchanged["ETag"] == etag
    editor.patch(f"{URL}{pk}/", {"first_name": "Mine"}, content_type="application/json")
    changed = editor.get(f"{URL}{pk}/", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200
    assert changed.json()["first_name"] == "Mine"


@pytest.mark.parametrize("day", ["1990-02-29", "2023-04-31", "2024-13-01", "2024-00-10"])
def test_a_day_the_calendar_lacks_is_not_a_date_rather_than_a_wrong_format(editor, day):
    response = editor.post(URL, payload(birthday=day), content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"birthday": [f"Not a date: {day} is not a day of the calendar."]}
    malformed = editor.post(URL, payload(birthday="17.05.1984"), content_type="application/json")
    assert "wrong format" in malformed.json()["birthday"][0]


def test_etag_names_the_version_and_if_match_refuses_a_stale_write(editor):
    pk = editor.post(URL, payload(), content_type="application/json").json()["id"]
    read = editor.get(f"{URL}{pk}/")
    seen = read["ETag"]
    assert seen.startswith('"')
    assert seen.endswith('"')
    assert editor.get(f"{URL}{pk}/")["ETag"] == seen, "stable while nothing changes"

    # Someone else changes the loyalty record meanwhile.
    other = editor.patch(
        f"{URL}{pk}/", {"relationship": {"points": 1}}, content_type="application/json"
    )
    assert other["ETag"] != seen
    stale = editor.patch(
        f"{URL}{pk}/", {"first_name": "Mine"}, content_type="application/json", HTTP_IF_MATCH=seen
    )
    assert stale.status_code == 412
    assert other["ETag"] in stale.json()["detail"]
    assert editor.get(f"{URL}{pk}/").json()["first_name"] == "Anna"
    assert editor.delete(f"{URL}{pk}/", HTTP_IF_MATCH=seen).status_code == 412

    fresh = editor.patch(
        f"{URL}{pk}/",
        {"first_name": "Mine"},
        content_type="application/json",
        HTTP_IF_MATCH=f'"nope", {other["ETag"]}',
    )
    assert fresh.status_code == 200
    assert fresh["ETag"] == editor.get(f"{URL}{pk}/")["ETag"]
    weak = editor.patch(
        f"{URL}{pk}/",
        {"first_name": "W"},
        content_type="application/json",
        HTTP_IF_MATCH="W/" + fresh["ETag"],
    )
    assert weak.status_code == 412, "If-Match compares strongly"
    assert editor.delete(f"{URL}{pk}/", HTTP_IF_MATCH="*").status_code == 204
    assert editor.delete(f"{URL}{pk}/", HTTP_IF_MATCH="*").status_code == 404


def test_a_write_that_changes_nothing_keeps_last_updated(editor):
    pk = editor.post(URL, payload(), content_type="application/json").json()["id"]
    before = editor.get(f"{URL}{pk}/")
    again = editor.patch(
        f"{URL}{pk}/",
        {"first_name": "Anna", "address": {"city": "Vienna"}},
        content_type="application/json",
    )
    assert again.json() == before.json()
    assert again["ETag"] == before["ETag"]


# -- shared addresses -------------------------------------------------------------


def test_changing_a_shared_address_copies_it_for_the_customer_who_changed_it(editor):
    a = editor.post(URL, payload(customer_id="A"), content_type="application/json").json()
    b = editor.post(URL, payload(customer_id="B"), content_type="application/json").json()
    # Data written around the services can point B at A's address.
    shared = AppUser.objects.get(pk=a["id"]).address
    b_own = AppUser.objects.get(pk=b["id"]).address
    AppUser.objects.filter(pk=b["id"]).update(address=shared)
    b_own.delete()
    b_before = editor.get(f"{URL}{b['id']}/").json()

    moved = editor.patch(
        f"{URL}{a['id']}/", {"address": {"street": "Ringstraße"}}, content_type="application/json"
    )
    assert moved.status_code == 200
    assert moved.json()["address"] == {**a["address"], "street": "Ringstraße"}
    assert editor.get(f"{URL}{b['id']}/").json() == b_before, "B's address and last_updated kept"
    a_address = AppUser.objects.get(pk=a["id"]).address_id
    assert a_address != shared.pk
    assert Address.objects.get(pk=shared.pk).street == "Neubaugasse"

    # B alone at the old address now: B's change is in place.
    editor.patch(f"{URL}{b['id']}/", {"address": {"city": "Graz"}}, content_type="application/json")
    assert AppUser.objects.get(pk=b["id"]).address_id == shared.pk
    assert Address.objects.get(pk=shared.pk).city == "Graz"
    assert AppUser.objects.get(pk=a["id"]).address.city == "Vienna"

    # Deleting A deletes A's own (copied) address, not B's.
    assert editor.delete(f"{URL}{a['id']}/").status_code == 204
    assert list(Address.objects.values_list("pk", flat=True)) == [shared.pk]


def test_deleting_one_of_two_customers_at_an_address_keeps_it(editor):
    a = editor.post(URL, payload(customer_id="A"), content_type="application/json").json()
    b = editor.post(URL, payload(customer_id="B"), content_type="application/json").json()
    shared = AppUser.objects.get(pk=a["id"]).address
    AppUser.objects.filter(pk=b["id"]).update(address=shared)
    Address.objects.exclude(pk=shared.pk).delete()
    assert editor.delete(f"{URL}{a['id']}/").status_code == 204
    assert Address.objects.filter(pk=shared.pk).exists()
    assert editor.delete(f"{URL}{b['id']}/").status_code == 204
    assert not Address.objects.exists()


HOSTILE_VALUES = [
    None,
    True,
    0,
    -1,
    1.5,
    2**63,
    10**400,
    "",
    " ",
    "x" * 100_000,
    "a\x00b",
    "a\ud800b",  # a lone surrogate: valid JSON escape, no character
    "'; DROP TABLE core_appuser; --",
    "2023-02-30",
    "9999-12-31T23:59:59-12:00",
    [],
    {},
    ["m"],
    {"nested": {"deeper": [1, 2, 3]}},
]

WRITABLE = [
    *[(None, name) for name in ("first_name", "last_name", "gender", "customer_id")],
    *[(None, name) for name in ("phone_number", "birthday")],
    *[("address", name) for name in ("street", "street_number", "city_code", "city")],
    ("address", "country"),
    ("relationship", "points"),
    ("relationship", "last_activity"),
]


def test_hostile_values_in_every_writable_field_are_never_a_server_error(editor):
    """Every writable field (nested ones too) against wrong types, overflowing
    numbers, NUL bytes, lone surrogates, impossible dates and huge strings, in
    a POST and a PATCH: a 400 naming the field, or a 2xx, never a 5xx."""
    pk = editor.post(URL, payload(customer_id="TARGET"), content_type="application/json").json()[
        "id"
    ]
    statuses: dict[int, int] = {}
    for i, ((group, name), value) in enumerate(
        (field, value) for field in WRITABLE for value in HOSTILE_VALUES
    ):
        if group is None:
            post_body, patch_body = payload(**{"customer_id": f"H{i}", name: value}), {name: value}
        else:
            nested = {**payload()[group], name: value}
            post_body = payload(customer_id=f"H{i}", **{group: nested})
            patch_body = {group: {name: value}}
        for method, url, body in (("post", URL, post_body), ("patch", f"{URL}{pk}/", patch_body)):
            response = getattr(editor, method)(url, body, content_type="application/json")
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, (method, group, name, repr(value)[:80])
            if response.status_code == 400 and value != "a\ud800b":
                errors = response.json()
                assert (group or name) in errors, (method, group, name, errors)
    assert set(statuses) <= {200, 201, 400}, statuses
    assert statuses[400] > len(WRITABLE) * len(HOSTILE_VALUES)
