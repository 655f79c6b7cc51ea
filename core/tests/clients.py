"""Test clients that call the API as its users do."""

from __future__ import annotations

from django.test import Client

from core.security.api_users import api_user_create


def api_client(username: str = "reader", read_only: bool = True) -> Client:
    """A test client that sends an API token of a user with customer permissions."""
    token = api_user_create(username=username, read_only=read_only)
    return Client(headers={"authorization": f"Token {token}"})
