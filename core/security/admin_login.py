"""The admin's sign-in form, with failed attempts limited per user name and address."""

from __future__ import annotations

import math

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.db import connection

from crm.observability import metrics

from .throttling import Rate, client_address, client_key, rate_of

#: One address may fail this many times the rate over all the names it tries
#: (one attacker trying many names), before its attempts are slowed down too.
ADDRESS_FACTOR = 10


class FailedSignIns:
    """Failed sign-ins as a sliding budget (GCRA, the token bucket's
    single-timestamp form), shared by every worker through PostgreSQL.

    Each key has a "theoretical arrival time" (TAT, kept in
    ``core_throttle_window.window_start``): a failure moves it
    ``period / requests`` later (from now, if it lay in the past). An attempt
    is let through while the TAT is at most ``period`` minus one interval
    ahead: a burst of ``requests`` failures, then one attempt per interval
    (3 minutes at 20/hour), however long the attacker keeps trying. There
    are no fixed windows, so 20 failures at the start of every clock hour
    cannot keep a key refused, and a refused key is refused for at most one
    interval after its last failure, not until a window ends.

    Always in PostgreSQL, also with ``REDIS_URL``: sign-ins are rare, and one
    statement each costs nothing beside the password hash.
    """

    def __init__(self, budgets: dict[str, Rate]) -> None:
        self.budgets = budgets

    @staticmethod
    def interval(rate: Rate) -> float:
        return rate.seconds / rate.requests

    def wait(self) -> float | None:
        """Seconds until every key lets an attempt through, or None if they all do now."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT key, extract(epoch FROM window_start - now()) "
                "FROM core_throttle_window WHERE key = ANY(%s)",
                [list(self.budgets)],
            )
            ahead = {key: float(seconds) for key, seconds in cursor.fetchall()}
        waits = [
            ahead[key] - (rate.seconds - self.interval(rate))
            for key, rate in self.budgets.items()
            if key in ahead
        ]
        longest = max(waits, default=0.0)
        return longest if longest > 0 else None

    def failed(self) -> None:
        """Count a failure against every key."""
        with connection.cursor() as cursor:
            for key, rate in self.budgets.items():
                # The TAT moves one interval on from now, or from where it was
                # if that is later; `hits` counts failures, for whoever looks.
                cursor.execute(
                    """
                    INSERT INTO core_throttle_window AS w (key, window_start, hits)
                    VALUES (%s, now() + make_interval(secs => %s), 1)
                    ON CONFLICT (key) DO UPDATE SET
                        window_start = greatest(w.window_start, now()) + make_interval(secs => %s),
                        hits = w.hits + 1
                    """,
                    [key, self.interval(rate), self.interval(rate)],
                )


class ThrottledAuthenticationForm(AdminAuthenticationForm):
    """Django's admin sign-in, slowed down after ``CRM_THROTTLE_LOGIN`` failed attempts.

    Failures are counted per user name and address together (the user name
    lower-cased and stripped, so ``ADMIN`` and `` admin `` count as
    ``admin``), and per address over all names at ``ADDRESS_FACTOR`` times
    the rate. Never per user name alone: then anyone could lock the admin out
    by failing from a few addresses. A key that has used up its budget is
    refused, the right password included (a password guessed on the
    hundredth try must not let the guesser in), but only until its next
    attempt is due (see :class:`FailedSignIns`): the owner of the name, at
    an address of their own, is never refused.
    """

    def clean(self) -> dict:
        rate = rate_of("login")
        if rate is None:
            return super().clean()
        username = (self.cleaned_data.get("username") or "").strip().lower()
        address = client_address(self.request)
        budget = FailedSignIns(
            {
                client_key("login", f"{address} {username}"): rate,
                client_key("login-address", address): Rate(
                    rate.requests * ADDRESS_FACTOR, rate.seconds
                ),
            }
        )
        wait = budget.wait()
        if wait is not None:
            metrics.throttle_rejected("login")
            raise forms.ValidationError(
                "Too many failed sign-ins. Try again in %(minutes)d minutes.",
                code="throttled",
                params={"minutes": math.ceil(wait / 60)},
            )
        try:
            return super().clean()
        except forms.ValidationError:
            budget.failed()
            raise
