"""gunicorn's workers, answering what gunicorn itself refuses in the API's JSON
and logging it without the request.

gunicorn answers a request it cannot parse (a raw non-ASCII byte in the
request line, a control character in a header's value, a line over its
limit) before the application sees it, with an HTML page, and writes the
whole request line into its error log: a customer's name from
``?last_name=Müller``, or a cursor, in a log that the application's masking
(crm/observability/logs.py) never sees. These workers answer
``{"detail": "…"}`` with the same status, and log the kind of error and the
client's address only. ``crm/gunicorn_conf.py`` chooses them for
``GUNICORN_WORKER_CLASS`` ``sync`` and ``gthread``.
"""

from __future__ import annotations

import http
import json
import ssl
from datetime import datetime

from gunicorn import util
from gunicorn.http import errors
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers.gthread import ThreadWorker as GunicornThreadWorker
from gunicorn.workers.sync import SyncWorker as GunicornSyncWorker

#: What each error gunicorn raises is answered with, the first match winning:
#: the status and the detail (a fixed text, never a part of the request).
ANSWERS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], int, str], ...] = (
    # A header the application tried to send: its fault, not the client's.
    (
        (errors.InvalidResponseHeader, errors.InvalidResponseHeaderName),
        500,
        "Internal server error.",
    ),
    (errors.LimitRequestLine, 414, "The request line is too long."),
    (errors.LimitRequestHeaders, 431, "The request's headers are too large."),
    (
        errors.InvalidRequestLine,
        400,
        "The request line is malformed, or holds a byte that must be percent-encoded "
        "(RFC 3986: a non-ASCII character as its UTF-8 bytes, e.g. M%C3%BCller).",
    ),
    (
        (errors.InvalidHeader, errors.InvalidHeaderName, errors.ObsoleteFolding),
        400,
        "A header's name or value is invalid (a control character, say).",
    ),
    (errors.UnsupportedTransferCoding, 501, "This transfer coding is not supported."),
    (errors.ExpectationFailed, 417, "This expectation is not supported."),
    ((errors.ForbiddenProxyRequest, ssl.SSLError), 403, "Forbidden."),
    (errors.ConfigurationProblem, 500, "Internal server error."),
    (errors.ParseException, 400, "Bad request."),
)


def answer(exc: BaseException) -> tuple[int, str]:
    """The status and detail that ``exc`` is answered with (500 for anything unknown)."""
    for kinds, status, detail in ANSWERS:
        if isinstance(exc, kinds):
            return status, detail
    return 500, "Internal server error."


def json_error(status: int, detail: str) -> bytes:
    """A whole HTTP/1.1 response: the API's error body, and the connection closed."""
    body = json.dumps({"detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
        "Connection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class JsonErrors:
    """Replaces gunicorn's ``Worker.handle_error`` (gunicorn 27's, which writes
    an HTML page and logs ``Invalid Request Line '<the line>'``)."""

    def handle_error(self, req, client, addr, exc) -> None:
        started = datetime.now()
        status, detail = answer(exc)
        address = addr[0] if addr else ""
        if status >= 500:
            # The path without its query (whose values may be personal data),
            # as the access log names it; the traceback for the developer.
            path = getattr(req, "path", None) or "(no request line read)"
            self.log.exception("Error handling request %s %s", getattr(req, "method", ""), path)
        else:
            self.log.warning("Refused a request from ip=%s: %s", address, type(exc).__name__)
        request = req
        if request is None and isinstance(exc, errors.InvalidHeader):
            request = exc.req  # the request whose header was refused, for the access log
        if request is not None:
            environ = default_environ(request, client, self.cfg)
            environ["REMOTE_ADDR"] = address
            response = Response(request, client, self.cfg)
            response.status = f"{status} {http.HTTPStatus(status).phrase}"
            response.response_length = 0
            self.log.access(response, request, environ, datetime.now() - started)
        try:
            util.write_nonblock(client, json_error(status, detail))
        except Exception:
            self.log.debug("Failed to send error message.")


class SyncWorker(JsonErrors, GunicornSyncWorker):
    """gunicorn's sync worker (``GUNICORN_WORKER_CLASS=sync``, the default)."""


class ThreadWorker(JsonErrors, GunicornThreadWorker):
    """gunicorn's threaded worker (``GUNICORN_WORKER_CLASS=gthread``)."""
