"""Rate limits: requests per client in fixed windows, counted in each worker and
shared by all of them through PostgreSQL (or Redis).

Why not DRF's throttles: they keep a list of timestamps per client in Django's
cache and read and rewrite it on every request, non-atomically; with no cache
server the workers do not even share it. Why not one atomic counter update
per request (what this project did before): a round trip and a write on every
request, the most expensive thing in the list's request path after the page
itself.

How the workers share the counts: each process counts the requests of each
client itself, and adds what it counted to the shared counter (one upsert,
which returns the total of every worker) when it has counted
:attr:`WindowCounter.flush_share` of the client's limit or
:attr:`WindowCounter.flush_seconds` have passed, whichever comes first. A
request is refused when the last known total plus what this process has
counted since reaches the limit. So with P worker processes a client can get
at most about P x 5% more than its limit in a window (the other workers'
counts it has not yet seen): with the defaults and the README's three workers,
6,900 instead of 6,000 requests a minute, 69 instead of 60 for anonymous
clients. Every denied request is counted too, so a client that keeps
hammering stays refused for the rest of the window.

Keys are bounded (a hash of the client's identity), expired windows are
purged, and the client's address is ``REMOTE_ADDR`` unless
``CRM_NUM_PROXIES`` says how many proxies in front of the application set
``X-Forwarded-For`` (the README's nginx replaces it: one).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from crm.observability import metrics
from crm.observability.request_ids import client_address as forwarded_client_address

logger = logging.getLogger(__name__)

DURATIONS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Rate:
    """``requests`` per window of ``seconds``."""

    requests: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        """DRF's notation: ``60/minute``, ``6000/m``, ``20/hour``, ``5/second``, ``1000/day``."""
        count, _, period = text.partition("/")
        return cls(int(count), DURATIONS[period.strip()[:1]])


class SharedCounts:
    """Where the workers add up their counts: the total of ``key`` in the
    window that starts at ``window`` (a Unix time), after adding ``delta``."""

    #: What a store raises when it cannot be reached: each process then
    #: counts on its own (see :meth:`WindowCounter._flush`).
    unavailable: tuple[type[Exception], ...] = (DatabaseError,)

    def add(self, key: str, window: int, delta: int, seconds: int) -> int:
        raise NotImplementedError


class PostgresCounts(SharedCounts):
    """One row per key in an UNLOGGED table (counters need no crash safety, so
    no WAL); a new window overwrites the row of the last one."""

    #: Rows of windows that ended longer ago than this are deleted, at most
    #: once per :attr:`purge_every` seconds per process.
    keep_seconds = 86400
    purge_every = 600

    def __init__(self) -> None:
        self.purged = time.monotonic()

    def add(self, key: str, window: int, delta: int, seconds: int) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO core_throttle_window AS w (key, window_start, hits)
                VALUES (%s, to_timestamp(%s), %s)
                ON CONFLICT (key) DO UPDATE SET
                    hits = CASE WHEN w.window_start = EXCLUDED.window_start
                                THEN w.hits + EXCLUDED.hits ELSE EXCLUDED.hits END,
                    window_start = EXCLUDED.window_start
                RETURNING hits
                """,
                [key, window, delta],
            )
            total = cursor.fetchone()[0]
            if time.monotonic() - self.purged > self.purge_every:
                self.purged = time.monotonic()
                cursor.execute(
                    "DELETE FROM core_throttle_window WHERE window_start < to_timestamp(%s)",
                    [time.time() - self.keep_seconds],
                )
        return total


class RedisCounts(SharedCounts):
    """A key per client and window in Redis (``REDIS_URL``), expiring with the
    window: ``INCRBY`` and ``EXPIRE`` in one transaction (MULTI/EXEC), so a
    key never outlives its window and never misses an increment. A Redis that
    does not answer within half a second counts as unavailable."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.unavailable = (redis.RedisError,)

    def add(self, key: str, window: int, delta: int, seconds: int) -> int:
        name = f"crm:throttle:{key}:{window}"
        pipeline = self.client.pipeline(transaction=True)
        pipeline.incrby(name, delta)
        pipeline.expire(name, seconds + 1)
        total, _ = pipeline.execute()
        return total


@dataclass
class _Window:
    start: int
    shared: int = 0  # the total of every worker, as of the last flush
    unflushed: int = 0  # counted here since
    flushed_at: float = 0.0


class WindowCounter:
    """This process's counts of each client's current window, and when to share them."""

    #: Share the counts when this process has counted this part of a limit...
    flush_share = 0.05
    #: ...or when this many seconds have passed since it last shared them.
    flush_seconds = 1.0
    #: Windows of at most this many clients are remembered per process.
    max_keys = 20_000

    def __init__(self, store: SharedCounts) -> None:
        self.store = store
        self.windows: OrderedDict[str, _Window] = OrderedDict()
        self.lock = threading.Lock()

    def hit(self, key: str, rate: Rate) -> float | None:
        """Count a request of ``key``; ``None`` if it is within ``rate``, else
        the seconds until its window ends."""
        now = time.time()
        with self.lock:
            window = self._window(key, rate, now)
            window.unflushed += 1
            due = window.unflushed >= max(1, math.floor(rate.requests * self.flush_share))
            if due or time.monotonic() - window.flushed_at >= self.flush_seconds:
                self._flush(key, window, rate)
            if window.shared + window.unflushed <= rate.requests:
                return None
        return window.start + rate.seconds - now

    def exhausted(self, key: str, rate: Rate) -> float | None:
        """Like :meth:`hit` for a request that is not counted (yet): the seconds
        until the window ends if ``key`` has used up ``rate``, else ``None``."""
        now = time.time()
        with self.lock:
            window = self.windows.get(key)
            start = int(now // rate.seconds * rate.seconds)
            if window is None or window.start != start:
                return None
            if window.shared + window.unflushed < rate.requests:
                return None
        return start + rate.seconds - now

    def _window(self, key: str, rate: Rate, now: float) -> _Window:
        start = int(now // rate.seconds * rate.seconds)
        window = self.windows.get(key)
        if window is None or window.start != start:
            window = self.windows[key] = _Window(start)
        self.windows.move_to_end(key)
        while len(self.windows) > self.max_keys:
            self.windows.popitem(last=False)
        return window

    def _flush(self, key: str, window: _Window, rate: Rate) -> None:
        try:
            window.shared = self.store.add(key, window.start, window.unflushed, rate.seconds)
        except self.store.unavailable as exc:
            # Without its store each process still limits what it sees; a
            # request that needs the database fails on its own (503).
            logger.warning("rate limit counts not shared: %s", exc)
            window.shared += window.unflushed
        window.unflushed = 0
        window.flushed_at = time.monotonic()


_counter: WindowCounter | None = None


def counter() -> WindowCounter:
    """This process's counter, sharing through Redis when ``REDIS_URL`` is set."""
    global _counter
    if _counter is None:
        store = RedisCounts(settings.REDIS_URL) if settings.REDIS_URL else PostgresCounts()
        _counter = WindowCounter(store)
    return _counter


def client_address(request) -> str:
    """The client's address: ``REMOTE_ADDR``, or with ``CRM_NUM_PROXIES`` proxies
    in front the address the nearest of them put in ``X-Forwarded-For``
    (:func:`crm.observability.request_ids.client_address`, which the metrics'
    allowed addresses use too).

    A header no declared proxy set is the client's own say: the connection's
    address counts. A connection without an address (gunicorn on a Unix
    socket behind a proxy nobody declared, which is warned about once) is a
    client of its own: counting all of them under one key made one client's
    failures refuse everyone behind the proxy.
    """
    address = forwarded_client_address(request) or request.META.get("REMOTE_ADDR")
    if address:
        return address
    connection = request.META.get("gunicorn.socket")
    return f"connection:{os.getpid()}:{id(connection) if connection else id(request)}"


#: Identities longer than this (an address from a header) are hashed.
MAX_IDENTITY = 45


def client_key(scope: str, identity: str) -> str:
    """A bounded key: an identity of any length (a header's) maps to a short one."""
    if len(identity) > MAX_IDENTITY:
        identity = "sha256:" + hashlib.sha256(identity.encode()).hexdigest()[:32]
    return f"{scope}:{identity}"


def rate_of(scope: str) -> Rate | None:
    """The rate of ``scope`` from ``settings.CRM_THROTTLE_RATES`` (read on each
    request, so that a deployment or a test can change it), or None."""
    text = settings.CRM_THROTTLE_RATES.get(scope)
    return parsed_rate(text) if text else None


@functools.lru_cache(maxsize=64)
def parsed_rate(text: str) -> Rate:
    return Rate.parse(text)


class ScopedThrottle(BaseThrottle):
    """A DRF throttle over :func:`counter`: a scope, and which clients it counts."""

    scope = ""

    def key(self, request: Request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request: Request, view) -> bool:
        rate, key = rate_of(self.scope), self.key(request)
        if rate is None or key is None:
            return True
        self.remaining = counter().hit(key, rate)
        if self.remaining is None:
            return True
        metrics.throttle_rejected(self.scope)
        return False

    def wait(self) -> float | None:
        return self.remaining


class UserThrottle(ScopedThrottle):
    """Per authenticated user (``CRM_THROTTLE_USER``)."""

    scope = "user"

    def key(self, request: Request) -> str | None:
        if not request.user.is_authenticated:
            return None
        return client_key(self.scope, str(request.user.pk))


class AnonThrottle(ScopedThrottle):
    """Per client address, for requests without valid credentials (``CRM_THROTTLE_ANON``).

    Failed authentications count here too (see
    :class:`core.security.views.ProtectedApiView`), and an address that has
    used up this budget is refused before its credentials are looked up.
    """

    scope = "anon"

    def key(self, request: Request) -> str | None:
        if request.user.is_authenticated:
            return None
        return self.address_key(request)

    @classmethod
    def address_key(cls, request) -> str:
        return client_key(cls.scope, client_address(request))
