"""OpenAPI post-processing: the answers every operation can give, and strict request bodies."""

from __future__ import annotations

#: The body of every other error: ``{"detail": "…"}`` (the ``Error`` component).
DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}

#: The body of a 400 for query parameters: each one named, with what is wrong
#: (the ``ParameterErrors`` component).
PARAMETER_ERRORS = {
    "type": "object",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}

COMMON_RESPONSES = {
    "400": "Invalid query parameters: each one named.",
    "401": "No or invalid credentials.",
    "403": "No permission for this operation on customers.",
    "429": "Too many requests; see Retry-After.",
    "503": "A query took too long, or the database is unavailable; see Retry-After.",
}

#: What an operation with a request body can also answer.
BODY_RESPONSES = {
    "413": "The request body is larger than the server accepts (2.5 MB).",
    "415": "The request body is not JSON.",
}


def add_common_responses(result: dict, generator, request, public) -> dict:
    """Document, on every operation, the errors that authentication, permissions,
    throttling, request parsing and the database's limits produce before the
    view itself runs; and make request bodies refuse what they do not know.

    Request components (drf-spectacular names them ``…Request`` when
    ``COMPONENT_SPLIT_REQUEST`` is on) get ``additionalProperties: false``:
    the write serializers refuse unknown and read-only fields with a 400.
    """
    for path in result.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            common = dict(COMMON_RESPONSES)
            if "requestBody" in operation:
                common.update(BODY_RESPONSES)
            for status, description in common.items():
                name = "ParameterErrors" if status == "400" else "Error"
                schema = {"$ref": f"#/components/schemas/{name}"}
                responses.setdefault(
                    status,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": schema}},
                    },
                )
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Error", DETAIL)
    components.setdefault("ParameterErrors", PARAMETER_ERRORS)
    for name, component in list(components.items()):
        if name.startswith("Patched"):
            _patch_nested(component, components)
    for name, component in components.items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result


def _patch_nested(component: dict, components: dict) -> None:
    """In a PATCH body, nested objects are partial too (``{"address": {"street": …}}``
    changes the street alone): point them at a ``Patched…`` copy without required fields."""
    prefix = "#/components/schemas/"
    for prop in component.get("properties", {}).values():
        target = prop.get("$ref", "")
        referenced = target.removeprefix(prefix)
        if referenced == target or not referenced.endswith("Request"):
            continue  # not a nested request object (an enum, say)
        name = "Patched" + referenced
        if name not in components:
            components[name] = {k: v for k, v in components[referenced].items() if k != "required"}
        prop["$ref"] = prefix + name
