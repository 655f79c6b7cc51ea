"""The export's download formats, for DRF's content negotiation."""

from __future__ import annotations

import json

from rest_framework.renderers import BaseRenderer


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
