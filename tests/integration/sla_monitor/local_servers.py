"""Real local servers for the notification channels: a tiny HTTP server (Slack webhook,
generic webhook) and aiosmtpd for e-mail. Nothing is patched: the service's own clients
talk to these over TCP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpServer:
    """Records every request; answers with the next status of ``statuses`` (then 200)."""

    port: int = 0
    requests: list[Request] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Request(method, path, headers, body))
            status = self.statuses.pop(0) if self.statuses else 200
            reply = b"ok" if status == 200 else b"down"
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-length: {len(reply)}\r\n"
                "connection: close\r\n\r\n".encode()
                + reply
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def http_server() -> AsyncIterator[HttpServer]:
    recorder = HttpServer()
    server = await asyncio.start_server(recorder._handle, "127.0.0.1", 0)
    recorder.port = server.sockets[0].getsockname()[1]
    try:
        yield recorder
    finally:
        server.close()
        await server.wait_closed()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    port: int
    inbox: _Inbox

    @property
    def messages(self) -> list[Message]:
        return self.inbox.messages


@asynccontextmanager
async def smtp_server() -> AsyncIterator[SmtpServer]:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    await asyncio.to_thread(controller.start)
    try:
        yield SmtpServer(port, inbox)
    finally:
        await asyncio.to_thread(controller.stop)
