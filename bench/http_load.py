"""bench_http's shared part: the serving stack under load, set up once for either
load generator.

The README's serving setup (nginx in front of gunicorn under production
settings, :mod:`bench.servers`) serves the API and, for wrk's runs, behind the
same nginx and in a gunicorn of the same configuration and worker count, the
raw floor (:mod:`bench.floor`): the same pages by the same SQL with no
framework. Two load generators drive it: wrk (:mod:`bench.wrk_load`), a C
program that costs the two shared cores little, for the capacity figures;
locust (:mod:`bench.locust_load`) for the realistic plan with invalid requests
mixed in, whose expected 400s wrk cannot tell from failures.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.db import connection
from django.test.utils import override_settings

from core.customers.sample import LISTENER_APPLICATION_NAME
from core.security.api_users import api_user_create

from . import scenarios, servers

#: How often each bench_list scenario comes up in the mixed plan: what people
#: do most (first pages, the README's filters) most, deep page numbers and
#: huge pages rarely.
SCENARIO_WEIGHTS = {
    "initial_page": 10,
    "last_name_smith": 10,
    "points_desc": 10,
    "city_vienna_page_3": 10,
    "deep_cursor_points": 5,
    "no_match": 3,
    "rare_phone": 3,
    "created_last_month": 3,
    "vienna_by_points": 2,
    "page_size_500": 1,
    "deep_page_number": 1,
}


def default_workers() -> int:
    """What the README's serving setup runs (see crm.gunicorn_conf)."""
    from crm import gunicorn_conf

    return gunicorn_conf.workers


@dataclass
class LoadedStack:
    """A serving stack ready for load: its address, what to request, with what."""

    stack: servers.Stack
    token: str
    scenarios: list[scenarios.Scenario]
    #: A temporary folder for the load generator's files (gone afterwards).
    workdir: Path
    #: The most database sessions the stack opened (final once the block ends).
    sampler: ConnectionSampler


@contextlib.contextmanager
def stack_under_load(
    *,
    workers: int,
    floor_plan: Callable[[list[scenarios.Scenario]], dict] | None = None,
    **stack_options,
) -> Iterator[LoadedStack]:
    """The set-up every bench_http run shares, whichever the load generator.

    A read-only API user's token; a fresh secret key, with which the
    scenarios' cursors are signed so that the server accepts them; the
    scenarios built from the data; a temporary folder; the stack (with the
    floor, given ``floor_plan``, which makes the floor's plan from the
    scenarios), with the rate limit out of the way; the database sessions
    sampled throughout. ``stack_options`` go to :func:`bench.servers.serving_stack`.
    """
    token = api_user_create(username="bench_http", read_only=True)
    secret_key = secrets.token_urlsafe(64)
    with override_settings(SECRET_KEY=secret_key):
        chosen = scenarios.build_scenarios(scenarios.data_facts())
    with tempfile.TemporaryDirectory(prefix="bench_http-") as tmp:
        workdir = Path(tmp)
        plan_file = None
        if floor_plan is not None:
            plan_file = workdir / "floor-plan.json"
            plan_file.write_text(json.dumps(floor_plan(chosen)))
        with (
            ConnectionSampler() as sampler,
            servers.serving_stack(
                workdir,
                secret_key=secret_key,
                token=token,
                workers=workers,
                floor_plan=plan_file,
                extra_env={"CRM_THROTTLE_USER": "1000000000/minute"},
                **stack_options,
            ) as stack,
        ):
            yield LoadedStack(stack, token, chosen, workdir, sampler)


def database_connections() -> int:
    """Client sessions on this database, but this process's own, the floor's
    and each worker's listener (one idle session each, outside the pool)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
            "AND application_name <> ALL(%s)",
            [[servers.FLOOR_APPLICATION_NAME, LISTENER_APPLICATION_NAME]],
        )
        return cursor.fetchone()[0]


class ConnectionSampler:
    """The most database sessions seen while the block runs, beyond those before it."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> ConnectionSampler:
        before = database_connections()

        def sample() -> None:
            while not self._stop.wait(0.5):
                self.peak = max(self.peak, database_connections() - before)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
