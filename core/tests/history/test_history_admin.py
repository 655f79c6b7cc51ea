"""History, access and erasure in the admin: Django's History button shows
what PostgreSQL recorded (whoever wrote it), the personal data downloads as
the API's answer, and erasure is the API's, each with its own permission."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from core.models import AppUser, HistoryEvent
from core.security.api_users import api_user_create
from core.tests.history.test_erasure import create, the_person
from core.tests.history.test_history_api import URL

ADMIN = "/admin/core/appuser/"


@pytest.fixture
def api(settings):
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": None}
    token = api_user_create(username="writer", read_only=False)
    return Client(headers={"authorization": f"Token {token}"})


def historian_api(pk: int) -> list[dict]:
    """The customer's history as the API answers it."""
    token = api_user_create(username="api-historian", read_only=True, granted=("view_history",))
    client = Client(headers={"authorization": f"Token {token}"})
    return client.get(f"{URL}{pk}/history/", {"page_size": 100}).json()["results"]


def staff(username: str, *permissions: str) -> Client:
    """A signed-in staff member with the core permissions named."""
    user = get_user_model().objects.create_user(username, password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="core", codename__in=permissions)
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db(transaction=True)
def test_the_history_page_shows_every_writer_newest_first_with_its_permission(api):
    pk = the_person(api)
    historian = staff("historian", "view_appuser", "change_appuser", "view_history")
    # An edit in the admin is recorded too, as the admin's.
    page = historian.get(f"{ADMIN}{pk}/change/")
    assert page.status_code == 200
    assert b"/history/" in page.content
    assert b"Personal data" in page.content
    assert b"Erase" not in page.content  # not without core.erase_appuser
    history = historian.get(f"{ADMIN}{pk}/history/")
    assert history.status_code == 200
    events = history.context["events"]
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)
    shown = ("at", "actor", "source", "request_id", "kind", "changes")
    from_api = historian_api(pk)
    assert [{k: e[k] for k in shown} for e in events] == [
        {k: e[k] for k in shown} for e in from_api
    ]
    assert {e["source"] for e in events} == {"api"}
    assert b"Quorbleton" in history.content  # the renaming, field by field
    # Without core.view_history, neither page.
    plain = staff("plain", "view_appuser", "change_appuser")
    assert plain.get(f"{ADMIN}{pk}/history/").status_code == 403
    assert plain.get(f"{ADMIN}{pk}/personal-data/").status_code == 403
    assert b"Personal data" not in plain.get(f"{ADMIN}{pk}/change/").content


@pytest.mark.django_db(transaction=True)
def test_the_history_pages_older_changes_by_event(api, monkeypatch):
    from core import admin as crm_admin

    monkeypatch.setattr(crm_admin, "HISTORY_PAGE", 2)
    pk = the_person(api)
    historian = staff("historian", "view_appuser", "view_history")
    seen, query = [], {}
    while True:
        page = historian.get(f"{ADMIN}{pk}/history/", query)
        assert 0 < len(page.context["events"]) <= 2
        seen += [e["id"] for e in page.context["events"]]
        if page.context["older"] is None:
            break
        query = {"before": page.context["older"]}
    assert seen == sorted(
        HistoryEvent.objects.filter(customer_id=pk).values_list("id", flat=True), reverse=True
    )
    assert historian.get(f"{ADMIN}{pk}/history/", {"before": "x"}).status_code == 404
    assert historian.get(f"{ADMIN}999999999/history/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_personal_data_downloads_as_the_apis_answer(api):
    pk = the_person(api)
    officer = staff("officer", "view_appuser", "view_history")
    download = officer.get(f"{ADMIN}{pk}/personal-data/")
    assert download.status_code == 200
    assert download["Content-Disposition"] == f'attachment; filename="customer-{pk}.json"'
    assert "no-store" in download["Cache-Control"]
    from core.history.selectors import personal_data

    assert download.json()["customer"]["last_name"] == "Quorbleton"
    assert download.json()["history"] == personal_data(pk)["history"]
    assert len(download.json()["history"]) > 3  # created, renamed, moved, scored


@pytest.mark.django_db(transaction=True)
def test_erasure_in_the_admin_is_the_apis_after_a_confirmation(api):
    pk = the_person(api)
    other = create(api, "ADMIN-OTHER", "Bleibgasse")
    others = list(HistoryEvent.objects.filter(customer_id=other).values_list("id", flat=True))
    plain = staff("plain", "view_appuser", "change_appuser", "delete_appuser")
    assert plain.get(f"{ADMIN}{pk}/erase/").status_code == 403
    assert plain.post(f"{ADMIN}{pk}/erase/").status_code == 403
    officer = staff("officer", "view_appuser", "change_appuser", "erase_appuser")
    assert b"Erase" in officer.get(f"{ADMIN}{pk}/change/").content
    confirm = officer.get(f"{ADMIN}{pk}/erase/")
    assert confirm.status_code == 200
    assert b"cannot be undone" in confirm.content
    assert AppUser.objects.filter(pk=pk).exists()  # asking erases nothing
    done = officer.post(f"{ADMIN}{pk}/erase/")
    assert done.status_code == 302
    assert done["Location"] == ADMIN
    assert not AppUser.objects.filter(pk=pk).exists()
    (left,) = HistoryEvent.objects.filter(customer_id=pk).values("kind", "source", "actor_id")
    actor = get_user_model().objects.get(username="officer").pk
    assert left == {
        "kind": HistoryEvent.Kind.ERASED,
        "source": HistoryEvent.Source.ADMIN,
        "actor_id": actor,
    }
    still = HistoryEvent.objects.filter(customer_id=other).values_list("id", flat=True)
    assert list(still) == others
    assert officer.post(f"{ADMIN}{pk}/erase/").status_code == 404
