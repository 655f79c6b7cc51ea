"""The raw HTTP floor: the API's scenarios answered with no framework at all.

A WSGI application of a few lines, served by the same gunicorn (same
configuration, same worker count) behind the same proxy as the API, so that
``bench_http`` can say how close the API comes to what this machine can do.
Per request it looks the path up (``/floor/<scenario>``), runs that
scenario's query on one psycopg connection per worker, and returns the text
PostgreSQL built: the page's rows as JSON, in the API's nested shape (see
:func:`bench.scenarios.floor_body_sql`).

It reads its plan, ``{"<scenario>": [sql, params]}``, from the JSON file named
by ``CRM_FLOOR_PLAN`` and its database from ``CRM_FLOOR_DSN`` (with
``CRM_FLOOR_PREPARE=0``, behind a pooler, it prepares no statements), and
imports nothing of Django or of this project.
"""

from __future__ import annotations

import json
import os

import psycopg

_plan: dict[str, tuple[str, list]] | None = None
_connection: psycopg.Connection | None = None


def application(environ, start_response):
    global _plan, _connection
    if _plan is None:
        with open(os.environ["CRM_FLOOR_PLAN"]) as f:
            _plan = {name: (sql, params) for name, (sql, params) in json.load(f).items()}
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(os.environ["CRM_FLOOR_DSN"], autocommit=True)
        if os.environ.get("CRM_FLOOR_PREPARE") == "0":
            _connection.prepare_threshold = None
        else:
            # psycopg prepares a statement on its fifth run, and PostgreSQL may
            # then switch to a generic plan, made without the parameters'
            # values: a plan for "phone LIKE $1" that cannot know the pattern
            # is rare. The API's statements are planned with their values
            # each time; so are the floor's, which keep only the saved parse.
            _connection.execute("SET plan_cache_mode = force_custom_plan")
    query = _plan.get(environ["PATH_INFO"].removeprefix("/floor/"))
    if query is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"unknown scenario"]
    body = _connection.execute(*query).fetchone()[0].encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
