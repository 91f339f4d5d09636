"""Requests carrying a NUL character in their path or query get a 422 naming where it was.

A NUL is no part of any name, email, id or filter a route takes, and PostgreSQL refuses it
in text (``invalid byte sequence for encoding "UTF8": 0x00``): without this guard every
route that passes a query or path parameter to the database answered 500. One check for
all routes of all services, instead of a pattern on every parameter; JSON bodies are the
models' business (they validate their own strings).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import parse_qsl

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

_MESSAGE = "NUL characters are not allowed"


class RefuseNulCharacters:
    """Pure ASGI middleware: costs a substring search per request. ``routes`` (the app's,
    read at request time) only serve to name the path parameter of a refused request."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = _nul_in(scope, self.routes)
            if where is not None:
                await _refuse(where, send)
                return
        await self.app(scope, receive, send)


def _nul_in(scope: Scope, routes: list[BaseRoute]) -> list[str] | None:
    """Where the request has a NUL: ``["path", name]`` (``["path"]`` when no route
    matches), ``["query", name]``, or None."""
    if "\x00" in scope["path"]:
        return ["path", *_path_parameter(scope, routes)]
    query: bytes = scope.get("query_string", b"")
    if b"%00" not in query and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return ["query", name.replace("\x00", "")]
    return None


def _path_parameter(scope: Scope, routes: Sequence[BaseRoute]) -> list[str]:
    """The name of the path parameter holding the NUL, as ``[name]``, or ``[]``. FastAPI
    wraps an included router in one route that matches without naming parameters; its
    ``original_router`` holds the routes (with their prefix) that do."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found = _path_parameter(scope, inner.routes)
            if found:
                return found
            continue
        match, child = route.matches(scope)
        if match is Match.FULL:
            params = child.get("path_params", {})
            return [name for name, value in params.items() if "\x00" in str(value)][:1]
    return []


async def _refuse(where: list[str], send: Send) -> None:
    """The same shape as FastAPI's validation errors, so clients read one format."""
    body = json.dumps(
        {"detail": [{"type": "nul_character", "loc": where, "msg": _MESSAGE}]}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 422,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
