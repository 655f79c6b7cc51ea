"""The API's token requests take the shorter middleware chain; everything
else the full one; both answer alike."""

from __future__ import annotations

import ast
import io
import sys
from pathlib import Path

import pytest
from django.conf import settings

from core.security.api_users import api_user_create
from crm.handlers import is_token_api_request
from crm.wsgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def call(path: str, headers: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
    path, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1:8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()},
    }
    answer: dict = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(response_headers)

    body = b"".join(application(environ, start_response))
    return answer["status"], answer["headers"], body


def test_which_requests_take_the_api_chain():
    api = {"PATH_INFO": "/api/users/", "HTTP_AUTHORIZATION": "Token abc"}
    assert is_token_api_request(api)
    assert is_token_api_request({**api, "HTTP_AUTHORIZATION": "token abc"})
    assert not is_token_api_request({**api, "HTTP_AUTHORIZATION": "Basic abc"})
    assert not is_token_api_request({"PATH_INFO": "/api/users/"})  # a browser's session
    assert not is_token_api_request({**api, "PATH_INFO": "/admin/"})
    assert "django.contrib.sessions.middleware.SessionMiddleware" not in settings.API_MIDDLEWARE
    assert "core.security.middleware.StatementTimeoutMiddleware" in settings.API_MIDDLEWARE
    assert "crm.observability.middleware.RequestObservabilityMiddleware" in settings.API_MIDDLEWARE


def test_a_token_request_is_answered_as_before_without_session_machinery():
    token = api_user_create(username="chains", read_only=True)
    status, headers, body = call("/api/users/?page_size=2", {"Authorization": f"Token {token}"})
    assert status.startswith("200")
    assert body.startswith(b'{"count":')
    assert "Set-Cookie" not in headers
    assert headers["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware ran
    assert (
        headers["Cache-Control"].startswith("max-age=0") or "no-store" in headers["Cache-Control"]
    )
    # A wrong token is refused the same way on the short chain.
    status, _, body = call("/api/users/", {"Authorization": "Token not-a-token"})
    assert status.startswith("401")
    assert b"detail" in body


def test_other_requests_keep_the_full_chain():
    status, headers, _ = call("/admin/login/", {})
    assert status.startswith("200")
    assert headers["X-Frame-Options"] == "DENY"
    status, headers, _ = call("/api/users/", {})  # no credentials: the full chain's 401
    assert status.startswith("401")
    assert headers["X-Frame-Options"] == "DENY"


def test_the_product_uses_no_test_utility():
    """Issue 29: no ``override_settings`` (nor anything of ``django.test``)
    outside tests: the API's chain is built from its own list (ChainHandler)."""
    root = Path(settings.BASE_DIR)
    offenders = []
    for path in [*(root / "crm").rglob("*.py"), *(root / "core").rglob("*.py")]:
        if "tests" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if any(name == "django.test" or name.startswith("django.test.") for name in names):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


def test_the_api_chain_is_built_from_its_own_list_without_touching_the_settings():
    api = application.api
    assert api.middleware == tuple(settings.API_MIDDLEWARE)
    assert settings.MIDDLEWARE != settings.API_MIDDLEWARE
    # The hooks of the short chain's middleware, and none of the others'.
    assert {type(hook.__self__).__name__ for hook in api._exception_middleware} >= {
        "StatementTimeoutMiddleware"
    }
    assert "CsrfViewMiddleware" not in {type(h.__self__).__name__ for h in api._view_middleware}
    assert "CsrfViewMiddleware" in {type(h.__self__).__name__ for h in application._view_middleware}
