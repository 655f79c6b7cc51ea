"""OpenAPI post-processing: the answers every operation can give."""

from __future__ import annotations

COMMON_RESPONSES = {
    "401": "No or invalid credentials.",
    "403": "No permission for this operation on customers.",
    "429": "Too many requests; see Retry-After.",
    "503": "A query took too long, or the database is unavailable; see Retry-After.",
}


def add_common_responses(result: dict, generator, request, public) -> dict:
    """Document, on every operation, the errors that authentication, permissions,
    throttling and the database's limits produce before the view itself runs."""
    detail = {
        "type": "object",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
    }
    for path in result.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            for status, description in COMMON_RESPONSES.items():
                responses.setdefault(
                    status,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": detail}},
                    },
                )
    return result
