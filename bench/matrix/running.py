"""The matrix's run: page positions reached through the API's own links, the
answers checked, every combination timed in shuffled rounds, and the worst
ones explained."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import numpy as np
from django.db import OperationalError, connection, transaction
from django.http import QueryDict
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings

from core.api.params import LIST_PARAMETERS
from core.customers.cursors import cursor_position
from core.customers.page_statement import page_statement
from core.customers.pagination import CustomerPagination
from core.customers.plans import PagePosition, plan
from core.customers.selectors import customer_list
from core.security.api_users import api_user_create

from .checks import check_next, check_rows
from .combinations import FIRST, PAGE, Combination
from .oracle import FILTERS, REFERENCE_FROM, Reference, search_sql
from .profiling import DataProfile

URL = "/api/users/"
PAGE_SIZE = 50
#: How deep the cursor position goes, in pages.
CURSOR_DEPTH = 100
#: The page number of the page-number position.
PAGE_NUMBER = 3

# -- running ---------------------------------------------------------------------


@dataclass
class Result:
    """One combination: where it sits, what it cost, and whether its answer was right."""

    combination: Combination
    url: str = ""
    page_position: str = ""  # "page 1", "cursor, page 100", "page 3"
    true_count: int = 0
    expected_status: int = 200
    times_ms: list[float] = field(default_factory=list)
    status: int = 0
    rows: int = 0
    api_count: int | None = None
    count_is_estimate: bool | None = None
    sql_queries: int = 0
    failure: str | None = None
    explain: str = ""
    #: p50 (ms) of the page statement as chosen, and with each plan forced,
    #: run as raw SQL (see time_plans).
    chosen_ms: float = math.nan
    walk_ms: float = math.nan
    sort_ms: float = math.nan

    def stat(self, name: str) -> float:
        values = np.asarray(self.times_ms or [math.nan])
        return {
            "min": float(values.min()),
            "p50": float(np.percentile(values, 50)),
            "p95": float(np.percentile(values, 95)),
            "max": float(values.max()),
        }[name]

    @property
    def regret(self) -> float:
        """The API's p50 over the faster of the two plans, forced, as raw SQL."""
        return self.stat("p50") / min(self.walk_ms, self.sort_ms)

    @property
    def plan_regret(self) -> float:
        """The chosen plan's SQL over the faster forced plan's: the choice alone."""
        return self.chosen_ms / min(self.walk_ms, self.sort_ms)

    @property
    def count_ratio(self) -> float | None:
        """The API's count over the true count (1.0 is exact; None without a count)."""
        if self.api_count is None:
            return None
        if self.true_count == 0:
            return 1.0 if self.api_count == 0 else math.inf
        return self.api_count / self.true_count


def _page_start(position: str, matches: int) -> tuple[int, str, dict[str, Any]]:
    """(rows before the page, a description, how it is asked for) for a position."""
    pages = max(1, math.ceil(matches / PAGE_SIZE))
    if position == FIRST:
        return 0, "page 1", {}
    if position == PAGE:
        number = min(PAGE_NUMBER, pages)
        return (number - 1) * PAGE_SIZE, f"page {number}", {"page": number}
    depth = min(CURSOR_DEPTH, pages)
    return (depth - 1) * PAGE_SIZE, f"cursor, page {depth}", {"cursor_depth": depth}


#: The largest page the API serves: how far each request of the walk to a
#: cursor position goes.
MAX_PAGE_SIZE = 500


def _cursor(combination: Combination, skip: int, requester: Requester) -> str | None:
    """A cursor to the rows after the first ``skip`` of the combination: the
    API's own ``next`` link after ``skip`` rows, followed in pages of up to
    MAX_PAGE_SIZE as a client would (a cursor does not depend on the page size).

    Each of these requests is bounded by the API's statement timeout, where
    running the page query itself once without one ran for 14 minutes at 10M
    customers. A page that fails raises :class:`PreparationFailed`.
    """
    if skip == 0:
        return None
    params, token, seen = combination.params(), None, 0
    while seen < skip:
        size = min(MAX_PAGE_SIZE, skip - seen)
        query = {**params, "page_size": size, **({"cursor": token} if token else {})}
        status, body, _ = requester.get(f"{URL}?{urlencode(query)}")
        if status != 200 or body is None:
            raise PreparationFailed(f"HTTP {status} on the way to row {skip:,}: {str(body)[:200]}")
        seen += len(body["results"])
        if not body.get("next") or len(body["results"]) < size:
            return None
        token = parse_qs(urlsplit(body["next"]).query)["cursor"][0]
    return token


class PreparationFailed(Exception):
    """A request on the way to a combination's page position did not answer 200."""


class Requester:
    """Sends the matrix's requests through Django's test client, as a user would."""

    def __init__(self) -> None:
        token = api_user_create(username="bench_matrix", read_only=True)
        self.client = Client(headers={"authorization": f"Token {token}"})

    def get(self, url: str) -> tuple[int, dict | None, float]:
        started = time.perf_counter()
        response = self.client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        body = response.json() if response["content-type"].startswith("application/json") else None
        return response.status_code, body, elapsed


def prepare(
    results: list[Result],
    ref: Reference,
    profile: DataProfile,
    requester: Requester,
    progress: Callable[[str], None],
) -> None:
    """True counts, page positions and URLs of every combination (untimed)."""
    truths: dict[tuple, int] = {}
    started = time.perf_counter()
    for i, result in enumerate(results, 1):
        c = result.combination
        key = (tuple(f.label for f in c.filters), c.search.text if c.search else None)
        if key not in truths:
            where = [FILTERS[f.name].sql(f.value) for f in c.filters]
            if c.search:
                where.append(search_sql(ref, c.search.text, profile.cities))
            truths[key] = ref.count(where)
        result.true_count = truths[key]
        skip, result.page_position, how = _page_start(c.position, result.true_count)
        params = c.params()
        if "page" in how:
            params["page"] = how["page"]
        elif "cursor_depth" in how:
            try:
                token = _cursor(c, skip, requester)
            except PreparationFailed as exc:
                result.failure = str(exc)
                token = None
            if token is not None:
                params["cursor"] = token
        result.url = f"{URL}?{urlencode(params)}" if params else URL
        if i % 50 == 0:
            progress(f"  prepared {i}/{len(results)} ({time.perf_counter() - started:.0f} s)")


def _search_matches(ref: Reference, profile: DataProfile, c: Combination, ids: list[int]):
    if not c.search or not ids:
        return None
    sql, params = search_sql(ref, c.search.text, profile.cities)
    rows = ref.rows(
        f"SELECT u.id FROM {REFERENCE_FROM} WHERE u.id = ANY(%s) AND {sql}", [ids, *params]
    )
    return {row[0] for row in rows}


def check_answer(
    result: Result, requester: Requester, ref: Reference, profile: DataProfile
) -> None:
    """Request the combination once (untimed) and check everything about the answer."""
    c = result.combination
    status, body, _ = requester.get(result.url)
    result.status = status
    if result.failure is not None:
        return  # its page position could not be reached (see prepare)
    if status != 200 or body is None:
        result.failure = f"HTTP {status}: {str(body)[:200]}"
        return
    rows = body["results"]
    result.rows = len(rows)
    result.api_count, result.count_is_estimate = body["count"], body["count_is_estimate"]
    skip = _skip_of(result)
    expected = max(0, min(PAGE_SIZE, result.true_count - skip))
    ids = [row["id"] for row in rows]
    failure = check_rows(c, rows, expected, _search_matches(ref, profile, c, ids))
    exact = result.count_is_estimate is False and result.api_count is not None
    if failure is None and exact and result.api_count != result.true_count:
        failure = f"exact count {result.api_count:,} but {result.true_count:,} customers match"
    if failure is None and body.get("next"):
        next_status, next_body, _ = requester.get(body["next"])
        if next_status != 200 or next_body is None:
            failure = f"the next page answered HTTP {next_status}"
        else:
            following = next_body["results"]
            next_ids = [row["id"] for row in following]
            expected_next = max(0, min(PAGE_SIZE, result.true_count - skip - PAGE_SIZE))
            failure = check_rows(
                c, following, expected_next, _search_matches(ref, profile, c, next_ids)
            ) or check_next(c, rows, following)
            if failure and not failure.startswith("the next"):
                failure = "next page: " + failure
    elif failure is None and skip + len(rows) < result.true_count:
        failure = f"no next link, but {result.true_count - skip - len(rows):,} rows follow"
    result.failure = failure


def _skip_of(result: Result) -> int:
    text = result.page_position
    number = int(text.rsplit(" ", 1)[1])
    return (number - 1) * PAGE_SIZE


def check_refusal(combination: Combination, requester: Requester) -> str | None:
    """A refused ordering is a 400 naming the parameter and what is allowed."""
    url = f"{URL}?{urlencode(combination.params())}"
    status, body, _ = requester.get(url)
    if status != 400 or not body or "ordering" not in body:
        return f"expected a 400 naming ordering, got HTTP {status}: {str(body)[:200]}"
    message = " ".join(body["ordering"])
    if "allowed" not in message.lower() and "use one of" not in message.lower():
        return f"the 400 does not say what is allowed: {message[:200]}"
    return None


def run_matrix(
    results: list[Result],
    requester: Requester,
    *,
    repeat: int,
    warmup: int,
    seed: int,
    progress: Callable[[str], None],
) -> None:
    """Time every combination ``repeat`` times, in rounds of a shuffled order."""
    rng = random.Random(seed)
    order = list(range(len(results)))
    for round_number in range(warmup + repeat):
        rng.shuffle(order)
        started = time.perf_counter()
        for i in order:
            result = results[i]
            status, _, elapsed = requester.get(result.url)
            if status != result.status and result.failure is None:
                result.failure = f"HTTP {status} in a timed run (first answer: {result.status})"
            if round_number >= warmup:
                result.times_ms.append(elapsed)
        kind = "warm-up" if round_number < warmup else "timed"
        progress(
            f"  round {round_number + 1}/{warmup + repeat} ({kind}): "
            f"{time.perf_counter() - started:.1f} s"
        )


def count_queries(result: Result, requester: Requester) -> list[str]:
    """The list's statements one request of ``result`` runs (its look-up among
    the known values, its page statement; not the rate limit's upsert)."""
    with CaptureQueriesContext(connection) as captured:
        requester.get(result.url)
    listed = [q["sql"] for q in captured.captured_queries if _list_query(q["sql"])]
    result.sql_queries = len(listed)
    return listed


def _list_query(sql: str) -> bool:
    """A statement of the list (a page, a look-up), not the throttle's or the token's."""
    text = sql.lstrip().upper()
    return text.startswith(("SELECT", "WITH", "(SELECT")) and (
        "CORE_CUSTOMER_LIST" in text or "CORE_SEARCHTERM" in text
    )


#: How long one forced plan may run (a walk of every entry of an index for
#: matches it never finds takes seconds at 10M customers).
FORCED_TIMEOUT_MS = 60_000


def time_plans(result: Result, repeat: int) -> None:
    """The combination's page statement as the list chooses it, and with each
    plan forced (a walk of the ordering's index as far as it takes; the
    matches read through the narrowest filter's index and sorted), each run
    as raw SQL on the read table: p50 of ``repeat`` runs after one more."""
    params = QueryDict(urlsplit(result.url).query)
    query = LIST_PARAMETERS.validate(params)
    customers = customer_list(filters=query.filters, ordering=query.ordering, search=query.search)
    size = query.options.get("page_size", CustomerPagination.page_size)
    offset, boundary, reverse = 0, None, False
    if "page" in query.options:
        offset = (query.options["page"] - 1) * size
    if "cursor" in query.options:
        values, reverse = cursor_position(
            query.options["cursor"], query.ordering, salt=CustomerPagination.cursor_salt
        )
        boundary = tuple(values)
    position = PagePosition(offset, size + 1, boundary, reverse)
    for kind in ("chosen", "walk", "sort"):
        chosen = plan(customers, position, "estimated", forced=None if kind == "chosen" else kind)
        sql, sql_params = page_statement(chosen)
        setattr(result, f"{kind}_ms", _timed_sql(sql, sql_params, repeat))


#: A forced plan is timed over about this long at most (its slow ones take
#: seconds: a walk of every entry of an index for matches it never finds).
PLAN_TIMING_SECONDS = 0.5


def _timed_sql(sql: str, params: list, repeat: int) -> float:
    """p50 (ms) of ``sql`` over up to ``repeat`` runs after an untimed one,
    fewer where each takes long (at least one)."""
    times = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL statement_timeout = {FORCED_TIMEOUT_MS}")
        runs = repeat + 1
        for round_number in range(runs):
            started = time.perf_counter()
            try:
                cursor.execute(sql, params)
                cursor.fetchall()
            except OperationalError:  # QueryCanceled: record the timeout itself
                return float(FORCED_TIMEOUT_MS)
            elapsed = time.perf_counter() - started
            if round_number == 0:
                runs = 1 + max(1, min(repeat, int(PLAN_TIMING_SECONDS / max(elapsed, 1e-6))))
            else:
                times.append(elapsed * 1000)
            if round_number + 1 >= runs:
                break
    return float(np.percentile(times, 50))


#: How long one EXPLAIN ANALYZE of a worst combination may run: a query the
#: API cut off at its statement timeout can run for many minutes unbounded
#: (one at 10M customers ran 15 minutes). Past it, the plan without ANALYZE.
EXPLAIN_TIMEOUT_MS = 60_000


def explain(result: Result, requester: Requester) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of every list query one request of ``result`` runs."""
    parts = [f"-- {result.combination.label}", f"-- GET {result.url}", ""]
    for sql in count_queries(result, requester):
        if not _list_query(sql):
            continue
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL statement_timeout = {EXPLAIN_TIMEOUT_MS}")
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
                plan = "\n".join(row[0] for row in cursor.fetchall())
        except OperationalError:  # QueryCanceled: the timeout
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN {sql}")
                plan = f"-- not finished within {EXPLAIN_TIMEOUT_MS} ms; the plan:\n" + "\n".join(
                    row[0] for row in cursor.fetchall()
                )
        parts += [sql, "", plan, ""]
    return "\n".join(parts)


def matrix_limits():
    """The API's own limits stay (a request over the statement timeout is a 503
    and fails the run); only the rate limit gets room for a benchmark's pace."""
    return override_settings(CRM_THROTTLE_RATES={"anon": None, "user": "100000000/minute"})
