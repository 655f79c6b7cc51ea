"""A real browser (Debian's Chromium, driven by Playwright) on Swagger UI and the admin.

These machines cannot download Playwright's own browser build, so the tests
launch the system Chromium; without it they are skipped, saying so (and fail
in CI: see crm.tests.processes.needs_programs).
"""

from __future__ import annotations

import os
import re
import shutil
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections

from core.dataset.loader import customer_dataset_replace
from core.models import AppUser
from core.security.api_users import api_user_create
from core.tests.dev_server import other_sessions
from crm.tests.processes import needs_programs

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    needs_programs("chromium"),
]

PASSWORD = "browser-Test-pass-1"


class Watch:
    """What a page did that it should not: every test ends with none of it.

    A request to another host (aborted here, so none leaves the machine), a
    request that failed (aborted, refused by the Content-Security-Policy,
    cut), an error in the console (a refused request shows there too) or an
    uncaught exception. A test that provokes an error on purpose says which
    with :meth:`allow`.
    """

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.foreign: list[str] = []
        self.failed: list[str] = []
        self.console: list[str] = []
        self.allowed: list[re.Pattern] = []

    def allow(self, pattern: str) -> None:
        """Console errors matching ``pattern`` are expected (e.g. a refused token's 401)."""
        self.allowed.append(re.compile(pattern))

    def request_failed(self, request) -> None:
        # The browser abandons what it was still loading of a page when the
        # test moves on (the admin's icons after a sign-in): ERR_ABORTED on
        # this server is that, not a refusal (a Content-Security-Policy block,
        # a cut connection, a request to another host all fail otherwise).
        same_origin = urlsplit(request.url).netloc == self.origin
        if not (same_origin and request.failure == "net::ERR_ABORTED"):
            self.failed.append(f"{request.url} ({request.failure})")

    def problems(self) -> list[str]:
        console = [m for m in self.console if not any(p.search(m) for p in self.allowed)]
        return (
            [f"request to another host: {url}" for url in self.foreign]
            + [f"failed request: {failure}" for failure in self.failed]
            + [f"console: {message}" for message in console]
        )


@pytest.fixture
def browser_page(live_server):
    # The live server's thread must not keep a database session between
    # requests, or the test database could not be dropped at the end.
    database = connection.settings_dict
    kept_for, database["CONN_MAX_AGE"] = database["CONN_MAX_AGE"], 0
    # Playwright's sync API runs an event loop in this thread; the data is set
    # up before it starts, but Django must not refuse the live server's ORM.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    watch = Watch(urlsplit(live_server.url).netloc)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})

        def only_the_server(route):
            if urlsplit(route.request.url).netloc == watch.origin:
                route.continue_()
            else:
                watch.foreign.append(route.request.url)
                route.abort()

        context.route("**/*", only_the_server)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.on("requestfailed", watch.request_failed)
        page.on(
            "console",
            lambda message: message.type == "error" and watch.console.append(message.text),
        )
        page.on("pageerror", lambda error: watch.console.append(f"uncaught: {error}"))
        page.watch = watch
        yield page
        # Playwright's sync API runs an event loop in this thread, and while it
        # runs, Django keeps this thread's connections apart from the ones it
        # has outside it (asgiref's Local is per context then). The queries
        # of the test and its fixtures opened connections here; closed now,
        # or one lingers and the test database cannot be dropped at the end
        # ("being accessed by other users").
        connections.close_all()
        context.close()
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    database["CONN_MAX_AGE"] = kept_for
    assert other_sessions() == 0, (
        "a session outlives the test: the test database could not be dropped"
    )
    assert watch.problems() == [], "the page did what it should not"


@pytest.fixture
def staff():
    customer_dataset_replace(n=400, chunk=400, seed=9)
    user = get_user_model().objects.create_superuser("browser", "b@example.com", PASSWORD)
    token = api_user_create(username="browser", read_only=False)
    user.refresh_from_db()
    return user, token


def log_in(page, live_server) -> None:
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "browser")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


def try_the_list(page, token: str) -> None:
    """Swagger UI's "Try it out" on the list: a 200 with rows, sent with the token."""
    operation = page.locator("#operations-users-customers_list")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "200"
    curl = operation.locator(".curl-command").inner_text()
    assert f"Authorization: Token {token}" in curl, "the request carries the token"
    body = operation.locator(".live-responses-table .microlight").first.inner_text()
    assert '"results"' in body
    assert '"customer_id"' in body


def test_swagger_ui_authorize_and_try_it_out(browser_page, live_server, staff, screenshots_dir):
    page = browser_page
    _, token = staff
    log_in(page, live_server)
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock")
    page.click("button.authorize")
    scheme = page.locator(".modal-ux .auth-container").filter(has_text="tokenAuth")
    scheme.locator("input").fill(f"Token {token}")
    scheme.locator("button.authorize").click()
    page.locator(".modal-ux button.btn-done").first.click()
    try_the_list(page, token)
    page.screenshot(path=str(screenshots_dir / "swagger-try-it-out.png"), full_page=False)
    assert page.watch.problems() == []


def test_swagger_ui_with_a_token_only(browser_page, live_server, staff, screenshots_dir):
    """No session: the page loads, asks for a token, and then works with it alone."""
    page = browser_page
    _, token = staff
    response = page.goto(f"{live_server.url}/api/docs/")
    assert response.status == 200, "not a bare 401"
    help_text = page.locator("#crm-credentials-help")
    help_text.wait_for()
    assert "API token" in help_text.inner_text()
    assert (
        page.locator("#crm-credentials-help a").get_attribute("href").startswith("/admin/login/")
    ), "and a way to sign in"
    page.screenshot(path=str(screenshots_dir / "docs-swagger-asks-for-a-token.png"))
    page.fill("#crm-token", f"T={token}")  # pasted as make run prints it
    page.click("#crm-token-use")
    page.wait_for_selector(".swagger-ui .opblock")
    assert "Using your API token" in page.locator("#crm-credentials-status").inner_text()
    # The Authorize dialog: the token first, explained, and already filled in.
    page.click("button.authorize")
    schemes = page.locator(".modal-ux .auth-container")
    assert "tokenAuth" in schemes.first.inner_text()
    assert "Token <key>" in schemes.first.inner_text()
    assert "Authorized" in schemes.first.inner_text()
    page.locator(".modal-ux button.btn-done").first.click()
    try_the_list(page, token)
    page.screenshot(path=str(screenshots_dir / "docs-swagger-token-only.png"))
    # The token stays for this tab: a reload needs no second paste.
    page.reload()
    page.wait_for_selector(".swagger-ui .opblock")


def test_a_refused_token_is_said_so(browser_page, live_server, staff):
    page = browser_page
    page.watch.allow(r"status of 401")  # the browser notes the schema's 401 itself
    page.goto(f"{live_server.url}/api/docs/")
    page.fill("#crm-token", "not-a-token")
    page.click("#crm-token-use")
    page.locator("#crm-credentials-status", has_text="refused").wait_for()
    assert page.locator(".swagger-ui .opblock").count() == 0


def test_redoc_with_a_token_only_and_offline(browser_page, live_server, staff, screenshots_dir):
    """ReDoc: no session, a token, no request leaves the machine, int64 shown right."""
    page = browser_page
    _, token = staff
    response = page.goto(f"{live_server.url}/api/redoc/")
    assert response.status == 200
    page.locator("#crm-credentials-help").wait_for()
    page.fill("#crm-token", token)
    page.click("#crm-token-use")
    page.wait_for_selector("[data-section-id]")
    page.locator(
        "[data-section-id='tag/users/operation/customers_list']"
    ).first.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    text = page.locator("#redoc-container").inner_text()
    assert "customers_list" in page.content()
    assert "9223372036854776000" not in text, "JavaScript's rounding of 2**63 - 1"
    assert "<int64>" in text
    menu = page.locator(".menu-content").inner_text()
    assert "Change some of a customer's fields" in menu, "summaries, not operation ids"
    assert "customers_partial_update" not in menu
    page.screenshot(path=str(screenshots_dir / "docs-redoc-token-only.png"))
    assert page.watch.problems() == [], "not even ReDoc's logo from cdn.redoc.ly"


def test_admin_login_search_and_edit(browser_page, live_server, staff, screenshots_dir):
    page = browser_page
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/core/appuser/?q=smith")
    page.wait_for_selector("#result_list")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() > 0
    assert "smith" in page.locator("#result_list").inner_text().lower()
    page.screenshot(path=str(screenshots_dir / "admin-changelist-search.png"))
    rows.first.locator("th a").click()
    page.wait_for_selector("#appuser_form")
    page.fill("#id_first_name", "Edited")
    page.fill("#id_address__city", "Edited City")  # the address, on the customer's page
    page.fill("#id_relationship__points", "4242")
    page.screenshot(path=str(screenshots_dir / "admin-change-form.png"), full_page=True)
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    page.screenshot(path=str(screenshots_dir / "admin-saved.png"))
    edited = AppUser.objects.get(first_name="Edited")
    assert edited.relationship.points == 4242
    assert edited.address.city == "Edited City"
    assert edited.last_updated > edited.created
    assert page.watch.problems() == []


def test_admin_refuses_to_overwrite_a_change_made_since_the_page_opened(
    browser_page, live_server, staff, screenshots_dir
):
    """Two editors: the page opened before the other's save says so, and saves nothing."""
    page = browser_page
    log_in(page, live_server)
    customer = AppUser.objects.order_by("pk").first()
    page.goto(f"{live_server.url}/admin/core/appuser/{customer.pk}/change/")
    page.wait_for_selector("#appuser_form")
    AppUser.objects.filter(pk=customer.pk).update(first_name="Theirs")  # the other editor
    page.fill("#id_first_name", "Mine")
    page.click("input[name=_save]")
    page.wait_for_selector(".errornote")
    assert "someone changed this customer" in page.locator(".errorlist.nonfield").inner_text()
    assert page.input_value("#id_first_name") == "Mine", "what was typed is kept"
    page.screenshot(path=str(screenshots_dir / "admin-stale-save-refused.png"))
    assert AppUser.objects.get(pk=customer.pk).first_name == "Theirs"
    assert page.watch.problems() == []


def test_the_customer_changelist_fits_1280_pixels(
    browser_page, live_server, staff, screenshots_dir
):
    """The "Created" column was cut off at 1280 px (Django's long date format)."""
    page = browser_page
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/core/appuser/")
    page.wait_for_selector("#result_list")
    results = page.locator("#changelist .results")
    overflow = results.evaluate("element => element.scrollWidth - element.clientWidth")
    assert overflow <= 0, f"the table is {overflow} px wider than its box"
    header = page.locator("#result_list thead th.column-signed_up")
    assert header.inner_text().strip().lower() == "created"
    box, table_box = header.bounding_box(), results.bounding_box()
    assert box["x"] + box["width"] <= table_box["x"] + table_box["width"] + 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", page.locator("td.field-signed_up").first.inner_text())
    assert "about" not in page.locator("#result-count").inner_text(), "400 rows: counted exactly"
    page.screenshot(path=str(screenshots_dir / "admin-changelist.png"))
