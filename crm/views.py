"""Error pages: JSON for API clients, Django's own pages for browsers.

Under /api/ every error is JSON. Elsewhere (the admin, a mistyped path) a
client that asks for HTML (a browser's ``Accept: text/html,…``) gets Django's
page and every other client (curl, an HTTP library: ``*/*`` or nothing) the
API's JSON, so that "errors are JSON whichever layer answers" holds for API
clients wherever their request went.
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults


def answers_in_json(request: HttpRequest) -> bool:
    """Under /api/, always; elsewhere unless the client asks for HTML."""
    return request.path.startswith("/api/") or "text/html" not in request.headers.get("Accept", "")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's refusals of a request before any view ran: a body over
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (a 413 here, as HTTP names it), a
    disallowed host, a malformed cookie."""
    if answers_in_json(request):
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse({"detail": "The request body is too large."}, status=413)
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if answers_in_json(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if answers_in_json(request):
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return defaults.server_error(request)
