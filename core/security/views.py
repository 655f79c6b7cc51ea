"""The order in which every API view checks a request."""

from __future__ import annotations

import math
import time

from django.conf import settings
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.request import Request
from rest_framework.views import APIView

from crm.observability import metrics

from . import local_slots, worker_time
from .throttling import AnonThrottle, counter, rate_of


def held(request: Request) -> list[local_slots.Slot]:
    """The slots the request holds (given back in :meth:`ProtectedApiView.dispatch`)."""
    if not hasattr(request, "_crm_slots"):
        request._crm_slots = []
    return request._crm_slots


class ProtectedApiView(APIView):
    """An API view whose rate limits see every request, refused ones included.

    DRF authenticates, then checks permissions, then throttles. So an
    anonymous client got its 401 without ever being counted (the per-address
    limit never applied), and a client guessing tokens was never slowed
    down. Here:

    1. credentials are always looked up: valid ones are served within their
       own user's limit whatever else came from their address (an office, a
       VPN or a carrier NAT puts many clients behind one address, and a
       cron job retrying a revoked token must not lock its neighbours out);
    2. only what fails spends the address's budget for unauthenticated
       requests (``CRM_THROTTLE_ANON``): a failed authentication, and a
       request without credentials (counted by AnonThrottle before its 401);
       once it is spent, failures from there are 429s, not 401s. A guesser
       still costs one indexed lookup per guess (a token's digest), never
       its neighbours' service;
    3. the throttles (per user, and per address for the anonymous) run before
       the permissions, so an anonymous request is counted before its 401.
    """

    #: Whether the view's requests are charged to their user's share of the
    #: worker time (core.security.worker_time); exports have their own limits.
    charges_worker_time = True

    def perform_authentication(self, request: Request) -> None:
        try:
            super().perform_authentication(request)
        except AuthenticationFailed:
            rate = rate_of(AnonThrottle.scope)
            if rate is not None:
                wait = counter().hit(AnonThrottle.address_key(request), rate)
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
        self.check_worker_time(request)
        self.take_worker_slot(request)

    def dispatch(self, request, *args, **kwargs):
        """DRF's dispatch, in a ``finally`` that gives the user's slot back on
        every exit.

        The slot was given back when Django closed the response, through
        ``finalize_response``: DRF skips that hook for an exception it does
        not handle (a 500), which left the slot to the garbage collector (a
        user got 429s for minutes after two 500s), and a sequential client's
        next request could reach another worker before the server had closed
        the last response (11 of 300 refused). Now a response is rendered and
        the slot given back before the response leaves the view; only a
        streaming one (an export) keeps it until it is closed, when its
        client has read it or gone.
        """
        started, streaming = time.perf_counter(), False
        try:
            response = super().dispatch(request, *args, **kwargs)
            streaming = response.streaming
            if streaming:
                for slot in getattr(self.request, "_crm_slots", ()):
                    response._resource_closers.append(slot.release)
                self.request._crm_slots = []
            elif callable(getattr(response, "render", None)):
                response.render()
            return response
        finally:
            drf_request = getattr(self, "request", None)
            for slot in getattr(drf_request, "_crm_slots", ()):
                slot.release()
            charged = getattr(drf_request, "_crm_charged_user", None)
            if charged is not None and not streaming:
                worker_time.charge(
                    charged, time.perf_counter() - started, settings.CRM_USER_WORKER_MS
                )

    def take_worker_slot(self, request: Request) -> None:
        """One of the user's ``CRM_USER_CONCURRENCY`` slots on this machine, held
        while the view works (exports: until their client has read them), or
        a 429 when all are held.

        A sync worker serves one request at a time: a user sending heavy
        requests (a deep page of 500 rows in a sort without an index) from
        many connections would otherwise hold every worker, and everyone
        else would wait, however far under its rate limit it stays.
        """
        limit = settings.CRM_USER_CONCURRENCY
        if not limit or not request.user.is_authenticated:
            return
        slot = local_slots.take(f"user-{request.user.pk}", limit)
        if slot is None:
            metrics.throttle_rejected("concurrency")
            raise Throttled(
                wait=1,
                detail=(
                    f"{limit} request{'s' if limit != 1 else ''} of yours already under way "
                    "on this server, the most it serves one user at once; "
                    "send the next when one has been answered."
                ),
            )
        held(request).append(slot)

    def check_worker_time(self, request: Request) -> None:
        """A 429 while the user has taken more than its share of this machine's
        worker time (``CRM_USER_WORKER_MS``, see core.security.worker_time);
        otherwise the request is charged what it takes (in :meth:`dispatch`)."""
        share = settings.CRM_USER_WORKER_MS
        if not share or not self.charges_worker_time or not request.user.is_authenticated:
            return
        ahead = worker_time.ahead(request.user.pk)
        cheaper = (
            "ask for cheaper pages (by cursor rather than deep page numbers, fewer rows, "
            "narrower filters)"
        )
        if ahead > worker_time.BURST_SECONDS:
            wait = ahead - worker_time.BURST_SECONDS
            metrics.throttle_rejected("worker_time")
            raise Throttled(
                wait=wait,
                detail=(
                    f"Your requests have taken more of this server's time than one user's "
                    f"share ({share} ms a second); try again in {math.ceil(wait)} s, or "
                    f"{cheaper}."
                ),
            )
        request._crm_charged_user = request.user.pk
        if ahead > worker_time.SERIAL_SECONDS:
            slot = local_slots.take(f"user-over-share-{request.user.pk}", 1)
            if slot is None:
                metrics.throttle_rejected("worker_time")
                raise Throttled(
                    wait=1,
                    detail=(
                        "Your requests have taken more than one user's share of this server's "
                        "time lately: they are served one at a time; send the next when one "
                        f"has been answered, or {cheaper}."
                    ),
                )
            held(request).append(slot)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.streaming:
            # The export is streamed to its client as it is read, not into
            # the proxy's buffers and temporary files (nginx honours this
            # header): its slots hold for as long as it takes its client to
            # read it (see core.security.export_slots).
            response["X-Accel-Buffering"] = "no"
        return response
