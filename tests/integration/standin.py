"""A backend that answers with bytes written by the test: an HTTP server library would
refuse, re-encode or normalise what a legacy server really sends (a Latin-1 byte in a
header value, a body longer than any sane reply).

It runs in the test's own event loop on a free port, reads each request (head and
``Content-Length`` body), counts it by ``METHOD path`` and answers with the bytes
``respond`` returns for it, then closes the connection.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from devstack import free_port

Respond = Callable[[str, str], bytes]
"""(method, target) → the whole response, head and body."""


def response(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"", *, length: bool = True
) -> bytes:
    """``length=False``: no Content-Length, the body ends when the connection closes."""
    head = f"HTTP/1.1 {status} X\r\n".encode()
    for name, value in headers:
        head += name + b": " + value + b"\r\n"
    if length:
        head += f"Content-Length: {len(body)}\r\n".encode()
    return head + b"Connection: close\r\n\r\n" + body


@dataclass
class StandIn:
    port: int
    calls: Counter[str] = field(default_factory=Counter)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def standin_backend(respond: Respond) -> AsyncIterator[StandIn]:
    standin = StandIn(free_port())

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            length = 0
            for line in lines:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            standin.calls[f"{method} {target}"] += 1
            writer.write(respond(method, target))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", standin.port)
    try:
        yield standin
    finally:
        server.close()
        await server.wait_closed()
