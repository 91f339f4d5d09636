"""A real HTTP server started by the test, standing in for an external platform (Meta's
Graph API, crm-sync): our clients talk to it over TCP exactly as in production."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Answer = Callable[[Request], tuple[int, Any]]


@dataclass
class HttpStub:
    """Answers every GET and POST with ``answer(request)`` (a POST's JSON body parsed in
    ``request.state.json``); records the requests; ``down`` makes it answer 503 as a
    platform in an outage does."""

    answer: Answer
    down: bool = False
    requests: list[Request] = field(default_factory=list)
    url: str = ""

    async def _handle(self, request: Request) -> Response:
        self.requests.append(request)
        body = await request.body()
        request.state.json = json.loads(body) if body else None
        if self.down:
            return JSONResponse({"error": "unavailable"}, status_code=503)
        code, body = self.answer(request)
        return JSONResponse(body, status_code=code)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def http_stub(answer: Answer) -> AsyncIterator[HttpStub]:
    stub = HttpStub(answer)
    app = Starlette(routes=[Route("/{path:path}", stub._handle, methods=["GET", "POST"])])
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    stub.url = f"http://127.0.0.1:{port}"
    try:
        yield stub
    finally:
        server.should_exit = True
        await task
