"""The admin's sign-in form, with failed attempts limited."""

from __future__ import annotations

import math

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm

from crm.observability import metrics

from .throttling import client_address, client_key, counter, rate_of


class ThrottledAuthenticationForm(AdminAuthenticationForm):
    """Django's admin sign-in, refused after ``CRM_THROTTLE_LOGIN`` failed attempts.

    Failures are counted per address and per user name (one attacker trying
    many names, many addresses trying one name), across all workers. Once
    either is used up, every attempt is refused until the window ends, the
    right password included: a password that was guessed on the hundredth
    try must not let the guesser in.
    """

    def clean(self) -> dict:
        rate = rate_of("login")
        if rate is None:
            return super().clean()
        username = (self.cleaned_data.get("username") or "").strip().lower()
        keys = [
            client_key("login-address", client_address(self.request)),
            client_key("login-user", username),
        ]
        waits = [w for w in (counter().exhausted(key, rate) for key in keys) if w is not None]
        if waits:
            metrics.throttle_rejected("login")
            raise forms.ValidationError(
                "Too many failed sign-ins. Try again in %(minutes)d minutes.",
                code="throttled",
                params={"minutes": math.ceil(max(waits) / 60)},
            )
        try:
            return super().clean()
        except forms.ValidationError:
            for key in keys:
                counter().hit(key, rate)
            raise
