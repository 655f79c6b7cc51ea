"""The export's download formats, for DRF's content negotiation; the
browsable API with a filter form."""

from __future__ import annotations

import json

from django.template import loader
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer


class FilterFormBrowsableAPIRenderer(BrowsableAPIRenderer):
    """DRF's browsable API, with the view's filter form behind its "Filters" button.

    DRF builds that form from a generic view's filter backends; these views
    validate their query parameters themselves (core.api.params), so a view
    names its form instead, in ``filter_form_class``: a Django form bound to
    the query string, so that a rejected value shows its error in place.
    """

    filter_template = "rest_framework/filter_form.html"

    def get_filter_form(self, data, view, request):
        form_class = getattr(view, "filter_form_class", None)
        if form_class is None or request.method != "GET":
            return None
        form = form_class(request.query_params or None)
        return loader.get_template(self.filter_template).render({"form": form}, request)


class StreamRenderer(BaseRenderer):
    """Names a download format (``?format=csv``) so that DRF's negotiation
    accepts it; the export streams its own bytes, and errors are rendered as
    JSON by the view."""

    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return json.dumps(data).encode()


class CsvRenderer(StreamRenderer):
    media_type = "text/csv"
    format = "csv"


class NdjsonRenderer(StreamRenderer):
    media_type = "application/x-ndjson"
    format = "ndjson"
