"""Request bodies: JSON only."""

from __future__ import annotations

import json

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class JsonBodyParser(JSONParser):
    """DRF's JSON parser, plus: a body nested deeper than Python's recursion
    limit (``[[[[…`` a thousand times: two kilobytes) is a 400 like any other
    malformed JSON, where the decoder's ``RecursionError`` would be a 500.

    The API's writes carry nested objects (the address, the loyalty record)
    that a form cannot express, so JSON is the only request format: forms and
    multipart bodies are a 415, and the OpenAPI document lists JSON alone.
    A body whose strings hold half a UTF-16 surrogate pair is a 400 too.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
        try:
            # JSON's \ud800-style escapes can spell half a character, which no
            # text column (and no UTF-8 answer echoing it back) can hold.
            json.dumps(data, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ParseError(
                "JSON parse error - a lone surrogate escape is not a character."
            ) from None
        return data
