"""The order in which every API view checks a request."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.views import APIView


class ProtectedApiView(APIView):
    """An API view whose rate limits see every request, refused ones included.

    DRF checks permissions before throttles, so an anonymous client gets its
    401 without ever being counted, and the per-IP limit never applies. Here
    :meth:`check_permissions` counts the request first; DRF's own call to
    :meth:`check_throttles`, which comes later, is then skipped.
    """

    def check_permissions(self, request: Request) -> None:
        self.check_throttles(request)
        super().check_permissions(request)

    def check_throttles(self, request: Request) -> None:
        if getattr(request, "_crm_throttled", False):
            return
        request._crm_throttled = True
        super().check_throttles(request)
