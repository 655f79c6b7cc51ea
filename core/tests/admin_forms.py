"""The admin's forms as a browser submits them: what a page shows is what a test posts.

A test that writes the POST data by hand posts what it thinks the form
holds; one that reads the rendered form posts what an editor's browser
would, the hidden fields (the customer's version) included, and fails when
the page stops showing a field.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any


class FormFields(HTMLParser):
    """The successful controls of one ``<form>`` (by id): each input's value,
    each select's chosen option, each textarea's text; checkboxes and radio
    buttons only when checked, buttons never."""

    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.values: dict[str, str] = {}
        self.select: str | None = None
        self.textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes: dict[str, Any] = dict(attrs)
        if tag == "form":
            self.inside = attributes.get("id") == self.form_id
        if not self.inside or "name" not in attributes:
            if tag == "option" and self.select is not None and "selected" in attributes:
                self.values[self.select] = attributes.get("value") or ""
            return
        name = attributes["name"]
        kind = attributes.get("type", "text")
        if tag == "input" and kind not in ("submit", "button", "reset", "image", "file"):
            if kind not in ("checkbox", "radio") or "checked" in attributes:
                self.values[name] = attributes.get("value") or ""
        elif tag == "select":
            self.select = name
            self.values.setdefault(name, "")
        elif tag == "textarea":
            self.textarea = name
            self.values[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None

    def handle_data(self, data: str) -> None:
        if self.textarea is not None:
            self.values[self.textarea] += data


def form_data(response, form_id: str) -> dict[str, str]:
    """What a browser would post from the page ``response`` rendered, form ``form_id``."""
    assert response.status_code == 200, response.status_code
    parser = FormFields(form_id)
    parser.feed(response.content.decode())
    assert parser.values, f"no form {form_id!r} on the page"
    parser.values.pop("csrfmiddlewaretoken", None)  # the test client skips CSRF checks
    return parser.values


def customer_form(client, pk: int | None = None) -> dict[str, str]:
    """The customer's change form (or the add form) as the admin shows it now."""
    url = f"/admin/core/appuser/{pk}/change/" if pk is not None else "/admin/core/appuser/add/"
    return form_data(client.get(url), "appuser_form")
