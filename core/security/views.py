"""The order in which every API view checks a request."""

from __future__ import annotations

from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.request import Request
from rest_framework.views import APIView

from crm.observability import metrics

from .authentication import CachedTokenAuthentication
from .throttling import AnonThrottle, counter, rate_of


class ProtectedApiView(APIView):
    """An API view whose rate limits see every request, refused ones included.

    DRF authenticates, then checks permissions, then throttles. So an
    anonymous client got its 401 without ever being counted (the per-address
    limit never applied), and a client guessing tokens cost a database lookup
    per guess, however many it sent. Here:

    1. a request whose address has used up its budget for unauthenticated
       requests (``CRM_THROTTLE_ANON``) is refused (429) before its
       credentials are looked up, unless they are already known to this
       process (a valid token's user is cached: see CachedTokenAuthentication);
    2. a failed authentication counts against that budget;
    3. the throttles (per user, and per address for the anonymous) run before
       the permissions, so an anonymous request is counted before its 401.
    """

    def perform_authentication(self, request: Request) -> None:
        rate = rate_of(AnonThrottle.scope)
        if rate is None:
            super().perform_authentication(request)
            return
        key = AnonThrottle.address_key(request)
        wait = counter().exhausted(key, rate)
        if wait is not None and not CachedTokenAuthentication.knows(request):
            metrics.throttle_rejected(AnonThrottle.scope)
            raise Throttled(wait)
        try:
            super().perform_authentication(request)
        except AuthenticationFailed:
            wait = counter().hit(key, rate)
            if wait is not None:
                metrics.throttle_rejected(AnonThrottle.scope)
                raise Throttled(wait) from None
            raise

    def check_permissions(self, request: Request) -> None:
        self.check_throttles(request)
        super().check_permissions(request)

    def check_throttles(self, request: Request) -> None:
        # DRF calls this after check_permissions, which has run it already.
        if getattr(request, "_crm_throttled", False):
            return
        request._crm_throttled = True
        super().check_throttles(request)
