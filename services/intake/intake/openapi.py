"""Request bodies documented in OpenAPI for routes that read their body themselves (to
check a signature, archive the raw bytes, or limit its size)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its ``$defs`` inlined, so it stands alone inside an
    operation (OpenAPI resolves ``#/...`` against the whole document, not the schema)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def body(*media: tuple[str, type[BaseModel]], example: Any = None) -> dict[str, Any]:
    """``openapi_extra`` for a required body in these media types (the only ones the route
    accepts: :class:`~intake.guard.GuardedRoute` answers 415 to the rest)."""
    content: dict[str, Any] = {}
    for media_type, model in media:
        entry: dict[str, Any] = {"schema": inline_schema(model)}
        if example is not None:
            entry["example"] = example
        content[media_type] = entry
    return {"requestBody": {"required": True, "content": content}}
