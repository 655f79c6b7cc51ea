"""Rate limits shared by every worker process, kept in PostgreSQL (or Redis)."""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError, connection
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from crm.observability import metrics


class SettingsRateMixin:
    """Rates read from ``settings.CRM_THROTTLE_RATES`` on every request, so
    that a deployment (or a benchmark) can change them without a restart of
    DRF's settings machinery."""

    def get_rate(self) -> str | None:
        return settings.CRM_THROTTLE_RATES.get(self.scope)

    def throttle_failure(self) -> bool:
        return metrics.throttle_rejected(self.scope)


class PostgresWindowMixin:
    """A fixed-window counter in one atomic SQL statement.

    DRF's throttles keep a list of timestamps in Django's cache and rewrite it
    on every request (read, then write: not atomic). With no shared cache
    server, Django's database cache does that in four queries and a
    transaction per request. Here one ``INSERT … ON CONFLICT DO UPDATE …
    RETURNING`` counts the request in the current window and returns the
    total, atomically, in about 0.1 ms. The table is UNLOGGED: no WAL for
    counters that may as well restart after a crash.
    """

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    """
                    INSERT INTO core_throttle_window AS w (key, window_start, hits)
                    VALUES (%s, to_timestamp(floor(extract(epoch FROM now()) / %s) * %s), 1)
                    ON CONFLICT (key) DO UPDATE SET
                        hits = CASE WHEN w.window_start = EXCLUDED.window_start
                                    THEN w.hits + 1 ELSE 1 END,
                        window_start = EXCLUDED.window_start
                    RETURNING hits,
                        extract(epoch FROM w.window_start + make_interval(secs => %s) - now())
                    """,
                    [key, self.duration, self.duration, self.duration],
                )
                hits, self.remaining = cursor.fetchone()
        except DatabaseError:
            # Without a database the request fails anyway (503); do not turn
            # that into a 500 here.
            return True
        return hits <= self.num_requests or self.throttle_failure()

    def wait(self) -> float | None:
        return max(0.0, float(getattr(self, "remaining", self.duration)))


class UserThrottle(SettingsRateMixin, PostgresWindowMixin, UserRateThrottle):
    """Per authenticated user (and per IP for anonymous requests)."""


class AnonThrottle(SettingsRateMixin, PostgresWindowMixin, AnonRateThrottle):
    """Per client IP, for requests without credentials."""


class RedisUserThrottle(SettingsRateMixin, UserRateThrottle):
    """DRF's own throttle, counting in the Redis cache (``REDIS_URL``)."""


class RedisAnonThrottle(SettingsRateMixin, AnonRateThrottle):
    """DRF's own throttle, counting in the Redis cache (``REDIS_URL``)."""
