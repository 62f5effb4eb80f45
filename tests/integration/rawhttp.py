"""Requests written byte for byte: an HTTP client library would normalise the target,
refuse header bytes it does not like, or add headers of its own."""

from __future__ import annotations

import asyncio
import json
from typing import Any


async def raw_request(
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, bytes]] | None = None,
    body: bytes = b"",
) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of one request on a fresh connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n".encode()
    for name, value in headers or []:
        head += name.encode() + b": " + value + b"\r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\n".encode()
    writer.write(head + b"\r\n" + body)
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    payload = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split(b" ", 2)[1]), json.loads(payload)


async def raw_get(port: int, target: str) -> tuple[int, dict[str, Any]]:
    return await raw_request(port, "GET", target)
