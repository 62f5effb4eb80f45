"""Cached routes: the pods' in-process tier, one backend call per cold key, stale while
revalidate, invalidation everywhere and without races, and what may never be shared."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter

import aiohttp
from redis.asyncio import Redis

from devstack import Stack, backend_calls, metric
from queuefront.keys import Keys


def serial() -> str:
    return f"SN-{uuid.uuid4().hex[:8]}"


async def test_concurrent_misses_of_one_key_make_one_backend_call(
    stack: Stack, backend_url: str
) -> None:
    """50 concurrent GETs of one cold serial, spread over two pods: one backend call in
    all (single flight in each pod, the Redis lease across them), 50 identical answers."""
    first = await stack.start_api(QF_POD_ID=f"a-{uuid.uuid4().hex[:6]}")
    url_a = stack.api_url
    await stack.start_api(QF_POD_ID=f"b-{uuid.uuid4().hex[:6]}")
    url_b = stack.api_url
    await stack.start_worker()
    sn = serial()
    slow = {"X-Demo-Delay-Ms": "600"}
    async with aiohttp.ClientSession() as http:

        async def call(base: str) -> tuple[int, str]:
            async with http.get(f"{base}/api/products/{sn}", headers=slow) as resp:
                return resp.status, await resp.text()

        results = await asyncio.gather(*(call(url_a if i % 2 else url_b) for i in range(50)))
    assert Counter(s for s, _ in results) == {200: 50}
    assert len({body for _, body in results}) == 1
    assert await backend_calls(backend_url, f"GET /products/{sn}") == 1
    coalesced = await metric(
        first.metrics_url, "queuefront_cache_requests_total", result="coalesced"
    )
    assert coalesced >= 20


async def test_invalidation_on_one_pod_empties_the_tier_of_another_within_100_ms(
    stack: Stack, backend_url: str
) -> None:
    await stack.start_api(QF_POD_ID=f"a-{uuid.uuid4().hex[:6]}")
    url_a = stack.api_url
    pod_b = await stack.start_api(QF_POD_ID=f"b-{uuid.uuid4().hex[:6]}")
    url_b = stack.api_url
    await stack.start_worker()
    sn = serial()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url_b}/api/products/{sn}") as resp:
            assert resp.headers["X-Cache"] == "MISS"
        async with http.get(f"{url_b}/api/products/{sn}") as resp:
            assert resp.headers["X-Cache"] == "HIT"
        local = await metric(
            pod_b.metrics_url, "queuefront_cache_requests_total", result="hit", tier="local"
        )
        assert local == 1  # served from pod B's own memory, not Redis

        async with http.post(f"{url_a}/api/cache/invalidate", json={"serial": sn}) as resp:
            assert resp.status == 200
        await asyncio.sleep(0.1)
        async with http.get(f"{url_b}/api/products/{sn}") as resp:
            assert resp.headers["X-Cache"] == "MISS"
    assert await backend_calls(backend_url, f"GET /products/{sn}") == 2
    drops = await metric(
        pod_b.metrics_url, "queuefront_cache_tier_drops_total", reason="invalidation"
    )
    assert drops == 1


async def test_stale_while_revalidate_serves_the_old_answer_during_one_refresh(
    stack: Stack, backend_url: str
) -> None:
    """TTL 2 s, stale for 30 s more: after the TTL, requests get the stale answer at once
    (no 600 ms wait) while exactly one refresh runs; then the fresh answer."""
    await stack.start_api()
    await stack.start_worker()
    sn = serial()
    slow = {"X-Demo-Delay-Ms": "600"}
    path = f"/api/swr/{sn}"
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        async with http.get(path, headers=slow) as resp:
            assert resp.headers["X-Cache"] == "MISS"
        await asyncio.sleep(2.2)

        async def call() -> tuple[str, float]:
            started = time.monotonic()
            async with http.get(path, headers=slow) as resp:
                assert resp.status == 200
                return resp.headers["X-Cache"], time.monotonic() - started

        stale = await asyncio.gather(*(call() for _ in range(20)))
        assert {state for state, _ in stale} == {"STALE"}
        assert max(elapsed for _, elapsed in stale) < 0.4
        await asyncio.sleep(0.9)  # the refresh (600 ms) has landed, 2 s of TTL ahead
        state, _ = await call()
        assert state == "HIT"
    assert await backend_calls(backend_url, f"GET /swr/{sn}") == 2


async def test_a_reply_computed_before_an_invalidation_does_not_refill_the_cache(
    stack: Stack, backend_url: str, redis: Redis
) -> None:
    """A miss is in flight (its backend call takes 1 s) when the serial is invalidated:
    its answer reaches its client but is stored neither in Redis nor in the tier."""
    await stack.start_api()
    await stack.start_worker()
    sn = serial()
    keys = Keys(stack.settings().key_prefix)
    slow = {"X-Demo-Delay-Ms": "1000"}
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        in_flight = asyncio.create_task(http.get(f"/api/products/{sn}", headers=slow))
        await asyncio.sleep(0.4)
        async with http.post("/api/cache/invalidate", json={"serial": sn}) as resp:
            assert resp.status == 200
        first = await in_flight
        assert first.status == 200
        first.release()
        assert await redis.hlen(keys.cache(sn)) == 0
        async with http.get(f"/api/products/{sn}", headers=slow) as resp:
            assert resp.headers["X-Cache"] == "MISS"
    assert await backend_calls(backend_url, f"GET /products/{sn}") == 2


async def test_answers_that_must_not_be_shared_are_never_cached(
    stack: Stack, backend_url: str
) -> None:
    await stack.start_api()
    await stack.start_worker()
    private_answers = [
        {"Set-Cookie": "session=abc"},
        {"Cache-Control": "private, max-age=60"},
        {"Cache-Control": "no-store"},
        {"Vary": "Authorization"},
        {"Vary": "*"},
    ]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        for extra in private_answers:
            sn = serial()
            headers = {"X-Demo-Response-Headers": json.dumps(extra)}
            for _ in range(2):
                async with http.get(f"/api/swr/{sn}", headers=headers) as resp:
                    assert resp.status == 200
                    assert resp.headers["X-Cache"] == "MISS", extra
            assert await backend_calls(backend_url, f"GET /swr/{sn}") == 2, extra
        # a Vary on a header the route keys on is fine
        sn = serial()
        headers = {"X-Demo-Response-Headers": json.dumps({"Vary": "X-Demo-Delay-Ms"})}
        for state in ("MISS", "HIT"):
            async with http.get(f"/api/swr/{sn}", headers=headers) as resp:
                assert resp.headers["X-Cache"] == state


async def test_a_cached_route_forwards_only_the_headers_it_names(
    stack: Stack, backend_url: str
) -> None:
    """Cache poisoning: a client's extra header neither reaches the backend nor splits
    or taints the shared answer."""
    await stack.start_api()
    await stack.start_worker()
    sn = serial()
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        async with http.get(
            f"/api/shared/{sn}", headers={"X-Poison": "owned", "Cookie": "s=1"}
        ) as resp:
            body = await resp.json()
            assert resp.headers["X-Cache"] == "MISS"
        forwarded = {k.lower() for k in body["headers"]}
        assert "x-poison" not in forwarded and "cookie" not in forwarded, forwarded
        async with http.get(f"/api/shared/{sn}") as resp:
            assert resp.headers["X-Cache"] == "HIT"
            assert "owned" not in await resp.text()
    assert await backend_calls(backend_url, f"GET /shared/{sn}") == 1
