"""The README's first command: quickstart prepares everything and says where it is."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.test import Client

from core.models import AppUser


@pytest.mark.django_db(transaction=True)
def test_quickstart_prints_urls_credentials_and_a_working_token(capsys, reports_dir):
    call_command("quickstart", n=300, no_serve=True)
    out = capsys.readouterr().out
    assert AppUser.objects.count() == 300
    for path in ("/api/users/", "/api/docs/", "/api/redoc/", "/admin/"):
        assert f"http://127.0.0.1:8000{path}" in out
    password = re.search(r"user: admin, password: (\S+)\)", out).group(1)
    client = Client()
    assert client.login(username="admin", password=password)
    assert client.get("/admin/core/appuser/").status_code == 200
    token = re.search(r"API token  (\w+)", out).group(1)
    writer = re.search(r"Write token (\w+)", out).group(1)
    # The line the README's examples start from, and an example using it.
    assert f"  T={token} W={writer}\n" in out
    assert 'curl -H "Authorization: Token $T" \'http://127.0.0.1:8000/api/users/' in out
    response = Client(headers={"authorization": f"Token {token}"}).get("/api/users/")
    assert response.status_code == 200
    assert (
        Client(headers={"authorization": f"Token {token}"}).delete("/api/users/1/").status_code
        == 403
    )
    written = Client(headers={"authorization": f"Token {writer}"}).delete("/api/users/1/")
    assert written.status_code == 204, "the write token may write"
    # A second run keeps the data and gives a fresh admin password.
    call_command("quickstart", n=300, no_serve=True)
    assert AppUser.objects.count() == 299
    assert "Generated" not in capsys.readouterr().out
