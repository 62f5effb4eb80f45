"""One backend call per request, whatever fails after it: replies the worker cannot
pass on as they came are still answered, and never make a second call."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from devstack import Proc, Stack, backend_calls, eventually, metric, start_redis
from queuefront.sqs import QueueOps, open_client
from tests.integration.standin import response, standin_backend

LATIN1_DISPOSITION = 'attachment; filename="café.txt"'.encode("latin-1")
RETRY_S = 5
"""workers.priority.handle.FAILED_RETRY_S: when a message given back would be handled again."""


async def queue_empty(stack: Stack, queue_name: str) -> bool:
    """Nothing left on the queue, visible or in flight."""
    async with open_client(stack.settings()) as sqs:
        queue = await QueueOps.open(sqs, queue_name, 0)
        try:
            attrs = await queue.attributes(
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"
            )
        finally:
            await queue.close()
    return sum(int(v) for v in attrs.values()) == 0


@pytest.fixture
async def own_redis(stack: Stack, log_dir: Path) -> AsyncIterator[tuple[Redis, Proc]]:
    """The stack's processes use a Redis of their own, which the test may fill up."""
    url, proc = await start_redis(log_dir)
    stack.env["QF_REDIS_URL"] = url
    client = Redis.from_url(url)
    try:
        yield client, proc
    finally:
        await client.aclose()
        proc.signal(signal.SIGCONT)
        stack.stop_all()
        proc.stop()


async def test_a_latin1_response_header_is_passed_on_after_one_backend_call(
    stack: Stack,
) -> None:
    """A legacy server's ISO-8859-1 header value (``café`` as the single byte 0xE9): the
    client gets the answer with the header as text, and the backend ran once."""

    def respond(method: str, target: str) -> bytes:
        return response(
            200,
            [(b"Content-Type", b"application/json"), (b"Content-Disposition", LATIN1_DISPOSITION)],
            b'{"ok": true}',
        )

    async with standin_backend(respond) as backend:
        await stack.start_api()
        await stack.start_worker(QF_BACKEND_URL=backend.url)
        async with (
            aiohttp.ClientSession(base_url=stack.api_url) as http,
            http.post("/api/login", json={"user": "kiosk"}) as resp,
        ):
            status, body = resp.status, await resp.read()
            raw = dict(resp.raw_headers)
        assert status == 200, body
        await eventually(
            lambda: queue_empty(stack, stack.env["QF_QUEUE_HIGH"]), 10, "the message deleted"
        )
        assert backend.calls == {"POST /login": 1}
    assert body == b'{"ok": true}'
    # the text the server meant, in UTF-8; .encode("latin-1") of it gives its bytes back
    assert raw[b"Content-Disposition"] == 'attachment; filename="café.txt"'.encode()


async def test_a_reply_redis_refuses_is_answered_and_never_called_again(
    stack: Stack, own_redis: tuple[Redis, Proc], backend_url: str
) -> None:
    """Redis fills up (maxmemory, noeviction) while the backend works: storing the reply
    is refused. The client still gets its answer at once (the publish goes through),
    the message is deleted, and once Redis has room again nothing calls the backend a
    second time for it."""
    redis, _ = own_redis
    await redis.config_set("maxmemory-policy", "noeviction")
    await stack.start_api()
    worker = await stack.start_worker()
    path = f"/orders/full-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        call = asyncio.create_task(http.post(f"/api{path}", headers={"X-Demo-Delay-Ms": "1500"}))

        async def started() -> bool:
            return await backend_calls(backend_url, f"POST {path}") > 0

        await eventually(started, 10, "the backend call started")
        await redis.config_set("maxmemory", "1")  # every write refused from now on
        try:
            resp = await asyncio.wait_for(call, 15)
            status = resp.status
            resp.release()
        finally:
            await redis.config_set("maxmemory", "0")
    assert status == 200

    async def counted() -> bool:
        seen = await metric(
            worker.metrics_url, "queuefront_worker_messages_total", outcome="undeliverable"
        )
        return seen == 1

    await eventually(counted, 10, "the refused reply counted")
    await eventually(
        lambda: queue_empty(stack, stack.env["QF_QUEUE_HIGH"]), 10, "the message deleted"
    )
    # a message given back would be seen again after RETRY_S: watch past that
    until = time.monotonic() + RETRY_S + 3
    while time.monotonic() < until:
        assert await backend_calls(backend_url, f"POST {path}") == 1
        await asyncio.sleep(0.5)


async def test_a_backend_answer_larger_than_the_reply_limit_gets_502(stack: Stack) -> None:
    """Bodies are read no further than ``QF_MAX_REPLY_BYTES``, whether the backend
    declares their length or just streams until it closes; one at the limit passes."""
    limit = 64 * 1024
    sizes = {"/exact": limit, "/declared": 4 * limit, "/streamed": 4 * limit}

    def respond(method: str, target: str) -> bytes:
        size = sizes[target.removeprefix("/items")]
        streamed = target.endswith("/streamed")
        return response(200, [(b"Content-Type", b"text/plain")], b"x" * size, length=not streamed)

    async with standin_backend(respond) as backend:
        await stack.start_api()
        await stack.start_worker(QF_BACKEND_URL=backend.url, QF_MAX_REPLY_BYTES=str(limit))
        async with aiohttp.ClientSession(base_url=stack.api_url) as http:
            async with http.get("/api/items/exact") as resp:
                assert resp.status == 200
                assert len(await resp.read()) == limit
            for name in ("declared", "streamed"):
                async with http.get(f"/api/items/{name}") as resp:
                    assert resp.status == 502, name
                    body = await resp.json()
                assert body["error"] == "reply_too_large", body
                assert "QF_MAX_REPLY_BYTES" in body["message"]
        assert backend.calls == {f"GET /items{p}": 1 for p in sizes}
