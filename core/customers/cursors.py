"""The list's cursors: a boundary row's key values, encrypted.

A cursor holds the sort key of the row a page ends (or begins) with, the
ordering it belongs to and the direction to read on: what
:class:`core.customers.pagination.CustomerPagination` puts in ``next`` and
``previous`` and reads back from ``?cursor=``. The key is a customer's
birthday, name or id, so the payload is sealed (:func:`seal`), not only
signed.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import os
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.utils.crypto import salted_hmac

from .ordering import Ordering

# -- cursors -----------------------------------------------------------------


def key_to_json(value: Any) -> Any:
    """A key value as it travels in a cursor."""
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def key_from_json(kind: str, value: Any) -> Any:
    """The inverse of :func:`key_to_json`; raises ValueError or TypeError on junk."""
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError("not an integer")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise TypeError("not a string")
        return value
    if kind == "float":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TypeError("not a number")
        return float(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "datetime":
        return dt.datetime.fromisoformat(value)
    raise ValueError(kind)


class InvalidCursor(ValueError):
    """A cursor that was not issued by this server for this ordering."""


@functools.lru_cache(maxsize=8)
def _cipher(salt: str, key: str) -> AESGCM:
    # One key per salt and secret key, derived once (an HMAC-SHA256 of the
    # secret: 32 bytes, AES-256).
    return AESGCM(salted_hmac(salt, "cursor", secret=key, algorithm="sha256").digest())


#: Bytes of the random nonce each cursor starts with (AES-GCM's standard size).
NONCE_BYTES = 12


def seal(payload: dict[str, Any], *, salt: str) -> str:
    """``payload`` encrypted and authenticated: URL-safe, opaque to its holder.

    Why not a signature (``django.core.signing``): a signed cursor is plain
    base64, and a cursor holds a boundary row's key values, a customer's
    birthday or name, which then travel in URLs, access logs and browser
    histories. AES-GCM hides them and still refuses a token that was not
    issued with this secret key and salt.
    """
    nonce = os.urandom(NONCE_BYTES)
    data = json.dumps(payload, separators=(",", ":")).encode()
    sealed = nonce + _cipher(salt, settings.SECRET_KEY).encrypt(nonce, data, None)
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()


def unseal(token: str, *, salt: str) -> Any:
    """The inverse of :func:`seal`; raises ValueError on a token it did not issue."""
    try:
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = _cipher(salt, settings.SECRET_KEY).decrypt(
            sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], None
        )
    except (InvalidTag, binascii.Error, ValueError, UnicodeEncodeError):
        raise ValueError("not a cursor of this server") from None
    return json.loads(data)


def cursor_token(ordering: Ordering, values: Sequence[Any], backwards: bool, *, salt: str) -> str:
    """An encrypted position: the key values of a boundary row, the ordering
    they belong to, and the direction to read from there."""
    return seal(
        {"o": ordering.spec, "k": [key_to_json(v) for v in values], "b": int(backwards)},
        salt=salt,
    )


def cursor_position(token: str, ordering: Ordering, *, salt: str) -> tuple[list, bool]:
    """The inverse of :func:`cursor_token`: (key values, backwards), or :class:`InvalidCursor`."""
    try:
        payload = unseal(token, salt=salt)
        issued_for, raw_values, backwards = payload["o"], payload["k"], bool(payload["b"])
    except (KeyError, TypeError, ValueError):
        raise InvalidCursor(
            "Invalid cursor: use the next or previous link of a response."
        ) from None
    if issued_for != ordering.spec:
        raise InvalidCursor(
            f"This cursor belongs to ordering {issued_for!r}; "
            f"the request asks for {ordering.spec!r}."
        )
    try:
        values = [
            key_from_json(key.kind, value)
            for key, value in zip(ordering.keys, raw_values, strict=True)
        ]
    except (TypeError, ValueError):
        raise InvalidCursor("Invalid cursor: its position is malformed.") from None
    return values, backwards
