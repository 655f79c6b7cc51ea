"""Whether prepared statements pay for the page statement.

Django's PostgreSQL backend binds parameters on the client (psycopg's
``ClientCursor``): the server parses and plans every statement, and never
keeps one, which is what PgBouncer in transaction mode needs (Debian's 1.18
cannot follow a prepared statement from one server connection to another).
:func:`binding_paths` times the page statement that way, with server-side
binding, and prepared (psycopg's ``prepare=True``): the API prepares only
if that pays.
"""

from __future__ import annotations

import statistics
import time

import psycopg
from django.db import connection


def binding_paths(sql: str, params: list, repeat: int = 300) -> dict[str, float]:
    """Median milliseconds of the statement, fetched, by each way of binding."""
    connection.ensure_connection()
    raw = connection.connection
    times: dict[str, list[float]] = {"client": [], "server": [], "prepared": []}
    for _ in range(repeat):
        for name, samples in times.items():
            started = time.perf_counter()
            cursor = raw.cursor() if name == "client" else psycopg.Cursor(raw)
            with cursor:
                if name == "client":
                    cursor.execute(sql, params)
                else:
                    cursor.execute(sql, params, prepare=name == "prepared")
                cursor.fetchall()
            samples.append((time.perf_counter() - started) * 1000)
    raw.execute("DEALLOCATE ALL")
    return {name: statistics.median(samples) for name, samples in times.items()}
