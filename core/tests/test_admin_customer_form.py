"""The customer's page in the admin: customer, address and loyalty record in
one form, written by the API's services, with the API's ``If-Match``.

Every form is posted as the page rendered it (core.tests.admin_forms), and
every outcome is read back through the API: what the admin wrote is what
the API's clients see, ``last_updated`` and ``ETag`` included.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from core.customers.services import customer_create
from core.models import Address, AppUser, CustomerRelationship
from core.tests.admin_forms import customer_form
from core.tests.clients import api_client

pytestmark = pytest.mark.django_db

API = "/api/users/"


def change_url(pk: int) -> str:
    return f"/admin/core/appuser/{pk}/change/"


@pytest.fixture
def editor() -> Client:
    user = get_user_model().objects.create_superuser("editor", "e@example.com", "pw-Secret-123")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def api():
    return api_client("writer", read_only=False)


def new_customer(number: str = "ADM-1", **fields) -> int:
    return customer_create(
        address={
            "street": "Neubaugasse",
            "street_number": "7",
            "city_code": "1070",
            "city": "Vienna",
            "country": "Austria",
        },
        relationship={"points": 120},
        first_name=fields.pop("first_name", "Anna"),
        last_name="Huber",
        gender="f",
        customer_id=number,
        phone_number="+43 1 234 5678",
        **fields,
    ).pk


def saved(response) -> None:
    errors = response.context["adminform"].form.errors if response.status_code == 200 else ""
    assert response.status_code == 302, errors


def test_the_address_and_record_are_fields_of_the_customers_page(editor):
    pk = new_customer(email="anna@example.com")
    form = customer_form(editor, pk)
    assert "address" not in form, "no raw id of an address"
    assert not any(name.startswith("relationship-") for name in form), "no inline formset"
    assert form["address__street"] == "Neubaugasse"
    assert form["address__city"] == "Vienna"
    assert form["relationship__points"] == "120"
    assert form["version"] == api_client().get(f"{API}{pk}/")["ETag"], "the API's version"


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("address__city", "Graz", ("address", "city")),
        ("address__street", "Ringstraße", ("address", "street")),
        ("relationship__points", "4242", ("relationship", "points")),
    ],
)
def test_an_address_or_record_changed_in_the_admin_moves_last_updated_and_the_etag(
    editor, api, field, value, shown
):
    pk = new_customer()
    before = api.get(f"{API}{pk}/")
    response = editor.post(change_url(pk), {**customer_form(editor, pk), field: value})
    saved(response)
    after = api.get(f"{API}{pk}/")
    group, name = shown
    assert str(after.json()[group][name]) == value
    assert after.json()["last_updated"] > before.json()["last_updated"]
    assert after["ETag"] != before["ETag"]


def test_saving_the_page_unchanged_writes_nothing(editor, api):
    pk = new_customer()
    before = api.get(f"{API}{pk}/")
    saved(editor.post(change_url(pk), customer_form(editor, pk)))
    after = api.get(f"{API}{pk}/")
    assert after.json() == before.json(), "last_updated kept: nothing changed"
    assert after["ETag"] == before["ETag"]


def test_only_the_fields_changed_on_the_page_are_written(editor, api):
    """Two editors of one customer, each changing another field, one after the
    other: the second page is stale, and refused rather than putting back the
    first editor's field."""
    pk = new_customer()
    first, second = customer_form(editor, pk), customer_form(editor, pk)
    saved(editor.post(change_url(pk), {**first, "first_name": "Anne"}))
    refused = editor.post(change_url(pk), {**second, "address__city": "Graz"})
    assert refused.status_code == 200
    assert api.get(f"{API}{pk}/").json()["first_name"] == "Anne"
    assert api.get(f"{API}{pk}/").json()["address"]["city"] == "Vienna"
    # Reloaded, the page carries the first change, and the second is made on top.
    saved(editor.post(change_url(pk), {**customer_form(editor, pk), "address__city": "Graz"}))
    now = api.get(f"{API}{pk}/").json()
    assert (now["first_name"], now["address"]["city"]) == ("Anne", "Graz")


def test_a_page_older_than_an_api_write_is_refused_with_a_form_error(editor, api):
    pk = new_customer()
    page = customer_form(editor, pk)
    other = api.patch(f"{API}{pk}/", {"first_name": "Other"}, content_type="application/json")
    assert other.status_code == 200
    response = editor.post(change_url(pk), {**page, "first_name": "Mine"})
    assert response.status_code == 200, "the form again, not a redirect"
    errors = response.context["adminform"].form.non_field_errors()
    assert any("someone changed this customer" in error for error in errors), errors
    assert 'value="Mine"' in response.content.decode(), "what the editor typed is still there"
    assert api.get(f"{API}{pk}/").json()["first_name"] == "Other", "not overwritten"
    assert api.get(f"{API}{pk}/")["ETag"] == other["ETag"]


def test_a_page_without_its_version_is_refused(editor, api):
    pk = new_customer()
    page = customer_form(editor, pk)
    del page["version"]
    response = editor.post(change_url(pk), {**page, "first_name": "Mine"})
    assert response.status_code == 200
    assert "reload the page" in str(response.context["adminform"].form.errors)
    assert api.get(f"{API}{pk}/").json()["first_name"] == "Anna"


def test_a_shared_address_is_copied_for_the_customer_changed_in_the_admin(editor, api):
    a, b = new_customer("A"), new_customer("B")
    shared = AppUser.objects.get(pk=a).address_id
    own = AppUser.objects.get(pk=b).address_id
    AppUser.objects.filter(pk=b).update(address_id=shared)  # written around the services
    Address.objects.filter(pk=own).delete()
    b_before = api.get(f"{API}{b}/").json()
    page = editor.get(change_url(a))
    assert "Other customers live at this address too" in page.content.decode()

    saved(editor.post(change_url(a), {**customer_form(editor, a), "address__city": "Graz"}))
    assert api.get(f"{API}{a}/").json()["address"]["city"] == "Graz"
    assert AppUser.objects.get(pk=a).address_id != shared, "a copy of A's own"
    assert api.get(f"{API}{b}/").json() == b_before, "B's address and last_updated kept"
    assert "Other customers live" not in editor.get(change_url(a)).content.decode()


def test_a_customer_added_in_the_admin_gets_their_address_and_record(editor, api):
    page = customer_form(editor)
    page.update(
        first_name="Zoë",
        last_name="Admin",
        gender="o",
        customer_id="ADD-1",
        phone_number="+43 1 555",
        address__street="Gasse",
        address__street_number="1",
        address__city_code="8010",
        address__city="Graz",
        address__country="Austria",
        relationship__points="15",
    )
    saved(editor.post("/admin/core/appuser/add/", page))
    customer = AppUser.objects.get(customer_id="ADD-1")
    shown = api.get(f"{API}{customer.pk}/").json()
    assert shown["address"]["city"] == "Graz"
    assert shown["relationship"]["points"] == 15
    record = CustomerRelationship.objects.get(pk=customer.pk)
    assert record.last_activity >= record.created


def test_a_taken_customer_number_is_a_field_error(editor, api):
    new_customer("TAKEN")
    pk = new_customer("MINE")
    response = editor.post(change_url(pk), {**customer_form(editor, pk), "customer_id": "TAKEN"})
    assert response.status_code == 200
    assert "customer_id" in response.context["adminform"].form.errors
    assert api.get(f"{API}{pk}/").json()["customer_id"] == "MINE"


def test_a_customer_without_a_record_keeps_none_until_points_are_given(editor, api):
    pk = new_customer()
    CustomerRelationship.objects.filter(pk=pk).delete()
    page = customer_form(editor, pk)
    assert page["relationship__points"] == ""
    saved(editor.post(change_url(pk), {**page, "first_name": "Solo"}))
    assert api.get(f"{API}{pk}/").json()["relationship"] is None
    saved(editor.post(change_url(pk), {**customer_form(editor, pk), "relationship__points": "7"}))
    assert api.get(f"{API}{pk}/").json()["relationship"]["points"] == 7


def test_deleting_a_customer_in_the_admin_deletes_their_address_unless_shared(editor):
    a, b, c = new_customer("A"), new_customer("B"), new_customer("C")
    own_address = AppUser.objects.get(pk=a).address_id
    shared = AppUser.objects.get(pk=b).address_id
    AppUser.objects.filter(pk=c).update(address_id=shared)
    response = editor.post(f"/admin/core/appuser/{a}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Address.objects.filter(pk=own_address).exists(), "A's own address went with A"
    selected = {"action": "delete_selected", "_selected_action": [b], "post": "yes"}
    response = editor.post("/admin/core/appuser/", selected)
    assert response.status_code == 302
    assert not AppUser.objects.filter(pk__in=[a, b]).exists()
    assert Address.objects.filter(pk=shared).exists(), "C still lives there"


def test_a_view_only_user_sees_the_address_and_record_and_cannot_save(api):
    pk = new_customer()
    viewer = get_user_model().objects.create_user("viewer", password="pw-Secret-123")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_appuser"))
    client = Client()
    client.force_login(viewer)
    page = client.get(change_url(pk))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Neubaugasse 7, 1070 Vienna, Austria" in text
    assert "120 points" in text
    assert client.post(change_url(pk), {"first_name": "Nope"}).status_code == 403
