"""Memory under abuse: a body limit per route, and a per-process budget of request bytes
that no request waiting for its reply is charged against."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import aiohttp

from devstack import ROOT, Stack, eventually, metric

KIB = 1024


class Trickle:
    """A POST that declares its length and sends one KiB of it, then waits to be told to
    send the rest: a slow client holding its share of the api's budget."""

    def __init__(self, port: int, path: str, size: int) -> None:
        self._port, self._path, self._size = port, path, size
        self.go_on = asyncio.Event()

    async def run(self) -> tuple[int, dict[str, Any]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self._port)
        head = (
            f"POST {self._path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            f"Content-Length: {self._size}\r\n\r\n"
        )
        writer.write(head.encode() + b"a" * KIB)
        await writer.drain()
        await self.go_on.wait()
        writer.write(b"a" * (self._size - KIB))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        status_line, _, rest = data.partition(b"\r\n")
        payload = rest.partition(b"\r\n\r\n")[2]
        return int(status_line.split(b" ", 2)[1]), json.loads(payload)


async def test_the_demo_login_refuses_a_large_body_unread(stack: Stack) -> None:
    """The issue's 900 KiB login: 413 from the route's limit, chunked or not; a login
    of ordinary size still reaches the backend."""
    await stack.start_api(QF_ROUTES_FILE=str(ROOT / "examples" / "routes.toml"))
    await stack.start_worker(QF_ROUTES_FILE=str(ROOT / "examples" / "routes.toml"))

    async def chunks() -> Any:
        for _ in range(3):
            yield b"c" * 2 * KIB

    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        async with http.post("/api/login", data=b"x" * 900 * KIB) as resp:
            body = await resp.json()
            assert resp.status == 413, body
            assert body["error"] == "payload_too_large"
            assert "4096 bytes" in body["message"]
            assert body["request_id"] == resp.headers["X-Request-Id"]
        async with http.post("/api/login", data=chunks()) as resp:  # no Content-Length
            assert resp.status == 413
        login = {"user": "kiosk-7", "password": "x" * 200}
        async with http.post("/api/login", json=login) as resp:
            assert resp.status == 200
            assert json.loads((await resp.json())["body"]) == login
    assert await metric(stack.api_metrics_url, "queuefront_pending_request_bytes") == 0


async def test_bodies_past_the_pending_bytes_budget_get_503_before_they_are_read(
    stack: Stack,
) -> None:
    """A budget of 2 MiB: two slow 900 KiB uploads hold 1.8 MiB of it; a third gets 503
    at once (its body never read), counted by reason. Once they end, room again."""
    await stack.start_api(QF_MAX_PENDING_BYTES=str(2 * 1024 * KIB))
    await stack.start_worker()
    size = 900 * KIB
    trickles = [Trickle(stack.api_port, f"/api/orders/mem-{i}", size) for i in range(2)]
    running = [asyncio.create_task(t.run()) for t in trickles]

    async def held() -> bool:
        return await metric(stack.api_metrics_url, "queuefront_pending_request_bytes") == 2 * size

    await eventually(held, 10, "both slow uploads reserved")
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        async with http.post("/api/orders/mem-2", data=b"b" * size) as resp:
            body = await resp.json()
            assert resp.status == 503, body
            assert body["error"] == "overloaded"
            assert "QF_MAX_PENDING_BYTES" in body["message"]
            assert resp.headers["Retry-After"] == "1"
        # small requests still fit beside them
        async with http.post("/api/orders/mem-3", data=b"s" * 100 * KIB) as resp:
            assert resp.status == 200
        for t in trickles:
            t.go_on.set()
        assert [status for status, _ in await asyncio.gather(*running)] == [200, 200]
        assert await metric(stack.api_metrics_url, "queuefront_pending_request_bytes") == 0
        async with http.post("/api/orders/mem-4", data=b"b" * size) as resp:
            assert resp.status == 200
    rejected = await metric(
        stack.api_metrics_url, "queuefront_admission_rejections_total", reason="pending_bytes"
    )
    assert rejected == 1


async def test_a_request_waiting_for_its_reply_holds_none_of_its_body(stack: Stack) -> None:
    """Four 900 KiB requests wait 3 s for a slow backend: while they wait, none of their
    bytes is charged (they are on the queue), so four more fit in a 4 MiB budget that
    could never hold eight."""
    await stack.start_api(QF_MAX_PENDING_BYTES=str(4 * 1024 * KIB))
    await stack.start_worker()
    slow = {"X-Demo-Delay-Ms": "3000"}
    size = 900 * KIB
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:

        async def call(i: int) -> int:
            async with http.post(f"/api/orders/wait-{i}", data=b"w" * size, headers=slow) as r:
                await r.read()
                return r.status

        first = [asyncio.create_task(call(i)) for i in range(4)]

        async def waiting() -> bool:
            return await metric(stack.api_metrics_url, "queuefront_pending_replies") == 4

        await eventually(waiting, 10, "the first four waiting for their replies")
        assert await metric(stack.api_metrics_url, "queuefront_pending_request_bytes") == 0
        second = [asyncio.create_task(call(i)) for i in range(4, 8)]
        statuses = Counter(await asyncio.gather(*first, *second))
    assert statuses == {200: 8}
