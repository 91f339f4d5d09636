"""What every lead route checks before reading a body: its size (413) and its media type
(415). The accepted media types are the ones the route documents in OpenAPI."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response, status
from fastapi.routing import APIRoute

MAX_BODY_BYTES = 64 * 1024
"""Used when the app carries no intake settings (``ctx.extras["intake_settings"]``)."""


def max_body(request: Request) -> int:
    settings = request.app.state.ctx.extras.get("intake_settings")
    return int(settings.max_body_bytes) if settings is not None else MAX_BODY_BYTES


class GuardedRoute(APIRoute):
    """A route that refuses oversized bodies and undocumented content types before reading
    them, so a 1 GB upload or an XML body costs us nothing."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        accepted = tuple((self.openapi_extra or {}).get("requestBody", {}).get("content", {}))

        async def guarded(request: Request) -> Response:
            if accepted and request.method in ("POST", "PUT", "PATCH"):
                check_content_type(request, accepted)
                check_declared_length(request)
            return await handler(request)

        return guarded


def check_content_type(request: Request, accepted: tuple[str, ...]) -> None:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in accepted:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type: {media or 'missing'!r} not accepted here; use {', '.join(accepted)}",
        )


def check_declared_length(request: Request) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isdigit():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Content-Length: not a number")
    if int(declared) > max_body(request):
        raise too_large(max_body(request))


def too_large(limit: int) -> HTTPException:
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body: larger than {limit} bytes")


async def read_body(request: Request) -> bytes:
    """The raw body, read in chunks and cut off at the limit (chunked uploads declare no
    length, so the declared-length check alone is not enough)."""
    limit = max_body(request)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
