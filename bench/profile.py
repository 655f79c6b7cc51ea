"""bench_profile: where one API request's CPU time goes, by part of the request path.

A request is run in this process through the project's WSGI application, the
way gunicorn calls it, many times over. First without a profiler, for the
CPU time per request (``time.process_time``: this process's CPU, so neither
PostgreSQL's work nor the time spent waiting for it counts) and the median
of several batches (the machine is shared). Then under ``cProfile`` with a
CPU clock, to split that time between the parts of the path. The profiler
makes every Python call dearer, so its absolute times are not the request's:
each part's *share* of the profiled time is applied to the unprofiled CPU
time per request.

The parts are found by the functions that do them, by name, so the same
table can be made of an older version of the code (whose functions have
other names: each part lists both).
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

#: The parts of a list request, each the cumulative time of the functions
#: named (``module fragment:function``), less that of the parts nested in it
#: (``minus``). What no part claims is the framework's own (Django's handler,
#: the middleware, DRF's dispatch and negotiation).
PARTS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("authentication (token, cached user)", ("rest_framework/request:_authenticate",), ()),
    ("rate limits", ("rest_framework/views:check_throttles",), ()),
    ("permissions", ("rest_framework/views:check_permissions",), ("rate limits",)),
    (
        "parameter validation",
        ("core/api/params:validate", "core/api.py:validated"),
        (),
    ),
    (
        "the page: query building, SQL, fetching the rows",
        (
            "customers/selectors:customer_list",
            "core/selectors:customer_list",
            "customers/pagination:keyset_page",
            "customers/pagination:offset_page",
            "core/selectors:keyset_page",
            "core/selectors:offset_page",
        ),
        (),
    ),
    (
        "the count (estimate, exact, or remembered)",
        ("customers/pagination:customer_count", "core/selectors:customer_count"),
        (),
    ),
    (
        "rows to JSON objects",
        ("customers/columns:customer_rows", "core/selectors:customer_rows"),
        (),
    ),
    (
        "links and cursors",
        (
            "customers/pagination:get_next_link",
            "customers/pagination:get_previous_link",
            "core/api.py:link",
        ),
        (),
    ),
    ("rendering (JSON encoding)", ("django/template/response:render",), ()),
)

#: Exclusive time by library, across the whole request: how much of it is
#: Django's ORM, the database driver, and so on.
LIBRARIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Django ORM (query building, SQL compilation, rows)", ("django/db/models/",)),
    ("database driver (psycopg, Django's cursor wrappers)", ("psycopg/", "django/db/backends/")),
    ("Django REST framework", ("rest_framework/",)),
    ("Django (handler, middleware, HTTP, URLs)", ("django/",)),
    ("this project", ("/core/", "/crm/")),
)


@dataclass(frozen=True)
class Profile:
    url: str
    requests: int
    cpu_ms: float  # per request, unprofiled, median of batches
    parts: list[tuple[str, float]]  # (part, ms per request), framework last
    libraries: list[tuple[str, float]]  # (library, ms per request), the rest last


def _cumulative(stats: pstats.Stats, patterns: Sequence[str]) -> float:
    """Cumulative time of the functions matching ``patterns`` (outermost calls only:
    cProfile's cumulative time already counts recursion once)."""
    total = 0.0
    for (filename, _line, function), (_cc, _nc, _tt, cumulative, _callers) in stats.stats.items():
        path = filename.replace("\\", "/")
        for pattern in patterns:
            fragment, _, name = pattern.rpartition(":")
            if function == name and fragment in path:
                total += cumulative
                break
    return total


def profile(request: Callable[[], int], *, url: str, requests: int, batches: int = 10) -> Profile:
    """Run ``request`` (returns the status) ``requests`` times bare, then profiled."""
    for _ in range(max(20, requests // 10)):  # warm the caches and the connection
        status = request()
    if status != 200:
        raise RuntimeError(f"{url} answered {status}")
    per_batch = max(1, requests // batches)
    times = []
    for _ in range(batches):
        started = time.process_time()
        for _ in range(per_batch):
            request()
        times.append((time.process_time() - started) / per_batch * 1000)
    cpu_ms = statistics.median(times)
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for _ in range(per_batch * batches):
        request()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in stats.stats.values())
    measured: dict[str, float] = {}
    for name, patterns, minus in PARTS:
        measured[name] = max(
            0.0, _cumulative(stats, patterns) - sum(measured.get(m, 0.0) for m in minus)
        )
    claimed = sum(measured.values())
    parts = [(name, cpu_ms * seconds / total) for name, seconds in measured.items()]
    framework = "Django's handler, middleware, DRF's dispatch"
    parts.append((framework, cpu_ms * (total - claimed) / total))
    exclusive: dict[str, float] = {name: 0.0 for name, _ in LIBRARIES}
    for (filename, _line, _function), (_cc, _nc, own, _ct, _callers) in stats.stats.items():
        path = filename.replace("\\", "/")
        for name, fragments in LIBRARIES:
            if any(fragment in path for fragment in fragments):
                exclusive[name] += own
                break
    libraries = [(name, cpu_ms * seconds / total) for name, seconds in exclusive.items()]
    rest = total - sum(exclusive.values())
    libraries.append(("the standard library and C extensions", cpu_ms * rest / total))
    return Profile(url, per_batch * batches, cpu_ms, parts, libraries)


#: In a --url, stands for the cursor of the first page's ``next`` link.
NEXT_CURSOR = "cursor=next"


def second_page(application, url: str, headers: dict[str, str]) -> str:
    """``url`` with ``cursor=next`` replaced by the cursor of its first page's
    ``next`` link: a cursor page to profile (cursors are made per secret key)."""
    if NEXT_CURSOR not in url:
        return url
    first = url.replace(NEXT_CURSOR, "").replace("?&", "?").rstrip("&?")
    body = io.BytesIO()
    wsgi_request(application, first, headers, body)()
    following = json.loads(body.getvalue())["next"]
    parts = urlsplit(following)
    return f"{parts.path}?{parts.query}"


def wsgi_request(
    application, url: str, headers: dict[str, str], body: io.BytesIO | None = None
) -> Callable[[], int]:
    """A function that calls ``application`` with a GET of ``url``, as a WSGI server would."""
    path, _, query = url.partition("?")
    base = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1:8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "https",
        "wsgi.errors": sys.stderr,
        **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()},
    }
    statuses: list[str] = []

    def start_response(status, response_headers, exc_info=None) -> None:
        statuses.append(status)

    def call() -> int:
        environ = {**base, "wsgi.input": io.BytesIO(b"")}
        answer = b"".join(application(environ, start_response))
        if body is not None:
            body.write(answer)
        return int(statuses.pop()[:3])

    return call


#: The two runs whose difference counts a request's instructions: the
#: start-up (Python, Django, the first request's caches) is in both and
#: cancels out.
INSTRUCTION_RUNS = (10, 60)


def instructions_per_request(url: str, base_dir: Path) -> float:
    """Instructions the Python process runs per request of ``url``, counted
    by valgrind (callgrind): ``bench_profile --run N`` for each of
    :data:`INSTRUCTION_RUNS`, the difference over the difference in requests.

    Unlike CPU time, a count of instructions does not move with what else
    the machine runs: it compares commits on a shared machine. PostgreSQL's
    work is in another process and not counted.
    """
    counts = []
    for requests in INSTRUCTION_RUNS:
        run = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                sys.executable,
                "manage.py",
                "bench_profile",
                "--url",
                url,
                "--run",
                str(requests),
            ],
            cwd=base_dir,
            capture_output=True,
            text=True,
            check=True,
        )
        counts.append(int(re.search(r"Collected : (\d+)", run.stderr).group(1)))
    return (counts[1] - counts[0]) / (INSTRUCTION_RUNS[1] - INSTRUCTION_RUNS[0])
