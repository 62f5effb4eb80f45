"""A full Redis (``maxmemory`` under ``noeviction``, the policy the design needs): every
write refused, every answer a clear one — 503 naming Redis, never a 500, never a 504
at the end of a window — votes accepted (they need no Redis), reads still served, and
all well again once memory is free."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError

from devstack import Proc, Stack, eventually, metric, start_redis

FILLER_BYTES = 256 * 1024


@pytest.fixture
async def small_redis(stack: Stack, log_dir: Path) -> AsyncIterator[Redis]:
    """The stack's Redis: its own, of 16 MiB, refusing writes when full."""
    url, proc = await start_redis(
        log_dir, extra_args=("--maxmemory", "16mb", "--maxmemory-policy", "noeviction")
    )
    stack.env["QF_REDIS_URL"] = url
    client = Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()
        stack.stop_all()
        proc.signal(signal.SIGCONT)
        proc.stop()


async def fill(redis: Redis) -> int:
    """Writes until Redis refuses; returns how many filler keys it took. A refused
    write may still leave room for a small one, as a real Redis has until small writes
    take the last bytes: its limit is then set just under what it holds, so every
    write is refused from now on."""
    for i in range(1000):
        try:
            await redis.set(f"filler:{i}", b"f" * FILLER_BYTES)
        except OutOfMemoryError:
            used = int((await redis.info("memory"))["used_memory"])
            await redis.config_set("maxmemory", used - 1024 * 1024)
            return i
    raise AssertionError("Redis never refused a write: is maxmemory set?")


def assert_names_redis_memory(status: int, body: dict[str, Any]) -> None:
    assert status == 503, body
    assert body["error"] == "unavailable"
    assert body["dependency"] == "redis"
    assert "out of memory" in body["message"]


async def test_a_full_redis_gets_503_naming_it_and_votes_and_reads_still_work(
    stack: Stack, small_redis: Redis
) -> None:
    limited: Proc = await stack.start_api(QF_ANON_RATE_LIMIT_RPS="1000")
    limited_url = stack.api_url
    api = await stack.start_api()
    await stack.start_worker()
    warm, cold = f"SN-{uuid.uuid4().hex[:6]}", f"SN-{uuid.uuid4().hex[:6]}"
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:

        async def get(path: str, **headers: str) -> tuple[int, dict[str, Any], float]:
            started = time.monotonic()
            async with http.get(path, headers=headers) as resp:
                return resp.status, await resp.json(), time.monotonic() - started

        async with http.get(f"/api/products/{warm}") as resp:
            assert resp.status == 200 and resp.headers["X-Cache"] == "MISS"
        assert (await get("/api/quick/before"))[0] == 200
        assert await fill(small_redis) > 0

        async def probed_full() -> bool:
            # both pods: each probes on its own once a second (on a loaded machine the
            # second may notice a poll later than the first)
            name = "queuefront_redis_refusing_writes"
            return [await metric(p.metrics_url, name) for p in (api, limited)] == [1, 1]

        await eventually(probed_full, 10, "both apis noticed that Redis refuses writes")

        # a proxied request: refused before it is queued (no worker could claim it: a
        # 504 at the end of its window would be all it got)
        status, body, _ = await get("/api/quick/full")
        assert_names_redis_memory(status, body)
        # an idempotency record, a cache lease, a rate limit: each write refused
        async with http.post("/api/login", headers={"Idempotency-Key": "k-full"}) as resp:
            assert_names_redis_memory(resp.status, await resp.json())
        status, body, _ = await get(f"/api/products/{cold}")
        assert_names_redis_memory(status, body)
        # what needs no write passes even where the rate limit (a write) is on: a vote
        # (SQS and Postgres only) is accepted, a tally read; the limit is not applied
        vote = {"choice": 1, "voter": "v"}
        async with http.post(f"{limited_url}/api/polls/p/votes", json=vote) as resp:
            assert resp.status == 202, await resp.text()
        async with http.get(f"{limited_url}/api/polls/p/results") as resp:
            assert resp.status == 200
        async with http.get(f"{limited_url}/api/quick/limited") as resp:
            assert_names_redis_memory(resp.status, await resp.json())
        # reads: a cached answer (from the pod's memory), a tally
        async with http.get(f"/api/products/{warm}") as resp:
            assert resp.status == 200 and resp.headers["X-Cache"] == "HIT"
        assert (await get("/api/polls/p/results"))[0] == 200

        await small_redis.delete(*[k async for k in small_redis.scan_iter(match="filler:*")])

        async def answered_again() -> bool:
            return (await get(f"/api/quick/after-{uuid.uuid4().hex[:4]}"))[0] == 200

        await eventually(answered_again, 10, "answers again once Redis has memory")
    rejected = await metric(
        api.metrics_url, "queuefront_admission_rejections_total", reason="redis_full"
    )
    assert rejected >= 1
    for proc in (api, limited):
        assert "Traceback" not in proc.log()
        assert '"status": 500' not in proc.log()
