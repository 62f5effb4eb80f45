"""Memory and Redis under abuse: a body limit per route, a per-process budget of request
bytes that no request waiting for its reply is charged against, and tallies that expire
(and come back from Postgres) instead of filling Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from typing import Any

import aiohttp
import asyncpg
from redis.asyncio import Redis

from devstack import ROOT, Stack, eventually, metric
from queuefront.keys import Keys
from tests.integration.test_ingest import WRITER_FAST, api_tally, db_tally, vote_all

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
    await stack.start_api(QF_ROUTES_FILE=str(ROOT / "config" / "routes.toml"))
    await stack.start_worker(QF_ROUTES_FILE=str(ROOT / "config" / "routes.toml"))

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
    """Four 600 KiB requests wait 5 s for a slow backend: while they wait, none of their
    bytes is charged (they are on the queue), so four more fit in a 3 MiB budget that
    could never hold eight."""
    await stack.start_api(QF_MAX_PENDING_BYTES=str(3 * 1024 * KIB))
    await stack.start_worker()
    slow = {"X-Demo-Delay-Ms": "5000"}
    size = 600 * KIB
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:

        async def call(i: int) -> int:
            async with http.post(f"/api/orders/wait-{i}", data=b"w" * size, headers=slow) as r:
                await r.read()
                return r.status

        first = [asyncio.create_task(call(i)) for i in range(4)]

        async def waiting_holding_nothing() -> bool:
            url = stack.api_metrics_url
            return (
                await metric(url, "queuefront_pending_replies") == 4
                and await metric(url, "queuefront_pending_request_bytes") == 0
            )

        # sent within a second or two; their replies come after 5 s
        await eventually(waiting_holding_nothing, 4.5, "four waiting, none of their bytes held")
        second = [asyncio.create_task(call(i)) for i in range(4, 8)]
        statuses = Counter(await asyncio.gather(*first, *second))
    assert statuses == {200: 8}


async def test_a_tally_expires_after_its_last_vote_and_comes_back_from_postgres(
    db_stack: Stack, redis: Redis
) -> None:
    """TTL 2 s: a poll's hash (and every batch marker) expires; its results read empty;
    the next vote brings back the whole count from the table, not just itself. Polls
    voted in once each (anyone can invent them) leave only keys that expire."""
    stack = db_stack
    await stack.start_api()
    await stack.start_writer(QF_TALLY_TTL_S="2", **WRITER_FAST)
    keys = Keys(stack.settings().key_prefix)
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as http:
        await vote_all(stack, poll, 30, concurrency=8, choices=3)

        async def counted() -> bool:
            return await api_tally(http, stack, poll) == {0: 10, 1: 10, 2: 10}

        await eventually(counted, 15, "30 votes counted")
        for i in range(5):
            await vote_all(stack, f"{poll}-once-{i}", 1)

        async def expired() -> bool:
            return await api_tally(http, stack, poll) == {}

        await eventually(expired, 10, "the silent poll's tally expired")
        await vote_all(stack, poll, 1, choices=1)  # one more vote, for choice 0

        async def rebuilt() -> bool:
            return await api_tally(http, stack, poll) == {0: 11, 1: 10, 2: 10}

        await eventually(rebuilt, 15, "the whole count back from Postgres")
        assert await db_tally(stack, poll) == {0: 11, 1: 10, 2: 10}
    tallies = [k async for k in redis.scan_iter(match=f"{keys.prefix}tally*", count=1000)]
    assert tallies, "no tally keys at all"
    ttls = [await redis.pttl(k) for k in tallies]
    # hashes and markers alike: -1 is a key without expiry (-2: gone meanwhile)
    assert -1 not in ttls, ttls


async def test_reconcile_brings_back_only_polls_voted_in_within_the_ttl(
    db_stack: Stack, redis: Redis
) -> None:
    stack = db_stack
    keys = Keys(stack.settings().key_prefix)
    recent, old = f"recent-{uuid.uuid4().hex[:6]}", f"old-{uuid.uuid4().hex[:6]}"
    conn = await asyncpg.connect(stack.env["QF_DATABASE_URL"])
    try:
        for poll, age in ((recent, "1 hour"), (old, "8 days")):
            await conn.execute(
                "INSERT INTO votes (id, received_at, poll_id, choice, voter)"
                " SELECT gen_random_uuid(), now() - $2::text::interval, $1, n % 2, 'v' || n"
                " FROM generate_series(1, 6) AS n",
                poll,
                age,
            )
    finally:
        await conn.close()
    code, out = await stack.run_module("queuefront.admin", "reconcile")
    assert code == 0, out
    assert await redis.hgetall(keys.tally("vote", recent)) == {b"0": b"3", b"1": b"3"}
    # a week's TTL less the hour since its last vote
    assert 7 * 86400 - 3700 < await redis.ttl(keys.tally("vote", recent)) <= 7 * 86400 - 3600
    assert await redis.exists(keys.tally("vote", old)) == 0
