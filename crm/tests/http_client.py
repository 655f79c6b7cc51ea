"""Requests to a served stack (bench.servers) as clients at different addresses make them.

Every address in 127.0.0.0/8 is this machine's: a client that binds its
socket to 127.0.0.7 reaches nginx on 127.0.0.1 and is 127.0.0.7 to it, so the
tests can be an office, a NAT and an attacker on one machine.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def is_json(self) -> bool:
        return self.headers.get("Content-Type", "").startswith("application/json")


def call(
    base_url: str,
    path: str,
    *,
    token: str | None = None,
    method: str = "GET",
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10,
) -> Answer:
    """One request from ``source``, on a connection of its own.

    A client-side timeout (``timeout`` seconds without an answer) raises
    TimeoutError: the tests that bound a wait use it to tell "answered" from
    "left hanging", never to measure.
    """
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=timeout, source_address=(source, 0)
    )
    sent = {"Host": f"{parts.hostname}:{parts.port}", "X-Forwarded-Proto": "https"}
    if token is not None:
        sent["Authorization"] = f"Token {token}"
    sent.update(headers or {})
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()
