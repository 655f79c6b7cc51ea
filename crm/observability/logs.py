"""Log lines that say which request they belong to, and carry no personal data.

Every line that passes the console handler gets its request's id (and, in
JSON, its method, path and user id) from :mod:`.context`, whichever logger
wrote it: this project's, Django's (``django.request``'s "Bad Request:
/api/users/"), DRF's or a library's. ``DJANGO_LOG_FORMAT=json`` writes one
JSON object per line for a log pipeline; the default is text for people.

Query parameter values never reach a line: the request log names the
parameters only (``?last_name=*``), and :class:`RequestContextFilter` masks
query strings in any other logger's message (``runserver``'s request lines)
and, in a message or a traceback written during a request, every value of
that request's query string. A customer's name searched for stays out of the
logs (``crm/tests/observability/test_logs.py`` checks it).

No client can write a line of its own into the log: in the text format,
control characters in a message (a ``%0A`` in a path or a parameter's name
arrives as a newline) are written as ``\n``, ``\x1b`` and so on, and the
lines of a traceback after its first are indented, so every line that starts
at its first column is a record's first line. JSON encodes them itself.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from .context import RequestContext, current

#: The request log: one line per request, at INFO, when ``CRM_ACCESS_LOG`` is on.
REQUEST_LOGGER = "crm.requests"
request_logger = logging.getLogger(REQUEST_LOGGER)

#: What a masked value reads as.
MASK = "*"

#: A query string inside a message ("GET /api/users/?last_name=smith HTTP/1.1").
QUERY_STRING = re.compile(r"\?([^\s\"'<>#?]*=[^\s\"'<>#]*)")
#: One ``name=value`` of it.
QUERY_VALUE = re.compile(r"=[^&;]*")

#: The attributes :class:`RequestContextFilter` adds to every record.
CONTEXT_FIELDS = ("request_id", "method", "path", "user_id")

#: Characters that would end, or rewrite on a terminal, the line they are
#: written on: C0 and C1 controls, DEL, and Unicode's line and paragraph
#: separators (which some log viewers break lines at).
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: The escapes of the usual ones, as Python writes them.
ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` on one line: every control character written as an escape."""
    if CONTROL.search(text) is None:
        return text
    return CONTROL.sub(lambda m: ESCAPES.get(m.group()) or _escape(m.group()), text)


def _escape(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def log_request(context: RequestContext, status: int, seconds: float, route: str) -> None:
    """The request log's line: method, path and parameter names, status, times, user."""
    request = context.request
    query = request.META.get("QUERY_STRING")
    params = parameter_names(query) if query else []
    request_logger.info(
        "%s %s%s %s %.2f ms (db %.2f ms, %d queries) user %s",
        printable(request.method),
        printable(request.path),
        "?" + "&".join(f"{printable(name)}={MASK}" for name in params) if params else "",
        status,
        seconds * 1000,
        context.db_seconds * 1000,
        context.queries,
        context.user_id or "-",
        extra={
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "db_ms": round(context.db_seconds * 1000, 3),
            "queries": context.queries,
            "route": route,
            "params": params,
        },
    )


def parameter_names(query: str) -> list[str]:
    """The names in a query string, decoded, in order (``a=1&b=&c`` -> a, b, c)."""
    return [unquote_plus(pair.partition("=")[0]) for pair in re.split("[&;]", query) if pair]


class RequestContextFilter(logging.Filter):
    """Adds the current request's id, method, path and user to a record, and
    masks query parameter values in it (see the module's docstring).

    A filter on the handler rather than on loggers, so that it sees every
    logger's records, and runs in the thread that logged (where the request's
    context is) even if the handler hands records to another thread.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = current()
        if context is None:
            record.request_id = record.method = record.path = record.user_id = None
        else:
            record.request_id = context.id
            record.method = context.request.method
            record.path = context.request.path
            record.user_id = context.user_id
        if record.name != REQUEST_LOGGER:
            redact(record, request_values(context))
        return True


def request_values(context: RequestContext | None) -> list[str]:
    """The current request's query values worth masking, longest first (a value
    inside another is masked as part of it), raw and decoded."""
    if context is None:
        return []
    query = context.request.META.get("QUERY_STRING")
    if not query:
        return []
    values = {v for _, v in parse_qsl(query, keep_blank_values=True)}
    values |= {pair.partition("=")[2] for pair in re.split("[&;]", query)}
    # One character (gender=f, page=2) identifies nobody, and masking it
    # would garble every line.
    return sorted((v for v in values if len(v) >= 2), key=len, reverse=True)


def redact(record: logging.LogRecord, values: list[str]) -> None:
    try:
        message = mask(record.getMessage(), values)
    except Exception:
        # A malformed call (arguments that do not fit the message): leave it
        # to the handler, which reports it without the values.
        record.args = None
        return
    if message != record.msg or record.args:
        record.msg, record.args = message, None
    if record.exc_info and values:
        if not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_text = mask(record.exc_text, values)
    if record.stack_info and values:
        record.stack_info = mask(record.stack_info, values)


def mask(text: str, values: list[str]) -> str:
    if "?" in text:
        text = QUERY_STRING.sub(lambda m: "?" + QUERY_VALUE.sub("=" + MASK, m.group(1)), text)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


class TextFormatter(logging.Formatter):
    """``2026-01-15 10:00:00,123 WARNING django.request [3f2a…] Bad Request: /api/users/``

    One line per record, whoever wrote the message (Django's "Not Found:
    <path>" carries the client's path): its control characters are escaped.
    A traceback's lines after the first are indented, so that no line of it
    (an exception's message may quote a client's input) starts like a record.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        if record.__dict__.get("request_id") is None:  # outside a request, or unfiltered
            record.request_id = "-"
        return super().format(record).replace("\n", "\n    ")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, the request's
    id, method, path and user id, and on the request log's lines status,
    duration_ms, db_ms, queries, route and params (names only).

    Only these fields are written: Django attaches the request object to its
    records (``extra={"request": ...}``), whose text holds the query string.
    """

    #: Fields the request log adds (see :func:`log_request`).
    REQUEST_FIELDS = ("status", "duration_ms", "db_ms", "queries", "route", "params")

    #: One encoder for every line (json.dumps with options makes a new one each call).
    encode = json.JSONEncoder(ensure_ascii=False, default=str).encode

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "timestamp": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS + self.REQUEST_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                fields[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exception"] = record.exc_text
        if record.stack_info:
            fields["stack"] = record.stack_info
        return self.encode(fields)


def logging_config(*, format: str, level: str, request_log: bool) -> dict[str, Any]:
    """``settings.LOGGING``: one console handler, in ``format`` ("text" or "json"),
    that every logger's records reach, through :class:`RequestContextFilter`.

    Django's own loggers lose their handlers (they propagate to this one
    instead), so that no line is written twice or unmasked: ``runserver``'s
    request lines go through the filter too.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_context": {"()": RequestContextFilter}},
        "formatters": {"text": {"()": TextFormatter}, "json": {"()": JsonFormatter}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": format,
                "filters": ["request_context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django": {"handlers": [], "level": level, "propagate": True},
            # runserver's request lines, unless the request log says it all.
            "django.server": {
                "handlers": [],
                "level": "WARNING" if request_log else "INFO",
                "propagate": True,
            },
            REQUEST_LOGGER: {"level": "INFO" if request_log else "WARNING"},
        },
    }
