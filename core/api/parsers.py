"""Request bodies: JSON only."""

from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class JsonBodyParser(JSONParser):
    """DRF's JSON parser, plus: a body nested deeper than Python's recursion
    limit (``[[[[…`` a thousand times: two kilobytes) is a 400 like any other
    malformed JSON, where the decoder's ``RecursionError`` would be a 500.

    The API's writes carry nested objects (the address, the loyalty record)
    that a form cannot express, so JSON is the only request format: forms and
    multipart bodies are a 415, and the OpenAPI document lists JSON alone.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
