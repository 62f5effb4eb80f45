"""The cross-pod cache lease against a backend slower than the lease: its holder renews
it while the fetch runs, so the other pods wait for that one answer."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import aiohttp
from redis.asyncio import Redis

from devstack import Stack, backend_calls
from queuefront import cache
from queuefront.keys import Keys


async def test_a_backend_slower_than_the_lease_is_called_once_across_pods(
    stack: Stack, backend_url: str, redis: Redis
) -> None:
    """Lease 1 s, backend 3.5 s: 20 concurrent misses of one key over two pods make one
    backend call; the lease is gone once the answer is stored."""
    await stack.start_api(QF_POD_ID=f"a-{uuid.uuid4().hex[:6]}", QF_CACHE_LEASE_S="1")
    url_a = stack.api_url
    await stack.start_api(QF_POD_ID=f"b-{uuid.uuid4().hex[:6]}", QF_CACHE_LEASE_S="1")
    url_b = stack.api_url
    await stack.start_worker()
    sn = f"SN-{uuid.uuid4().hex[:8]}"
    slow = {"X-Demo-Delay-Ms": "3500"}
    async with aiohttp.ClientSession() as http:

        async def call(base: str) -> tuple[int, str]:
            async with http.get(f"{base}/api/products/{sn}", headers=slow) as resp:
                return resp.status, await resp.text()

        first = asyncio.create_task(call(url_a))
        await asyncio.sleep(0.3)  # pod A holds the lease; pod B's requests come after
        rest = [asyncio.create_task(call(url_b if i % 2 else url_a)) for i in range(19)]
        results = await asyncio.gather(first, *rest)
    assert Counter(s for s, _ in results) == {200: 20}
    assert len({body for _, body in results}) == 1
    assert await backend_calls(backend_url, f"GET /products/{sn}") == 1
    keys = Keys(stack.settings().key_prefix)
    field = cache.field(
        "products_and_promotions", f"/products/{sn}", [("x-demo-delay-ms", "3500")]
    )
    assert await redis.hexists(keys.cache(sn), field)  # the answer, stored under this field
    assert await redis.exists(cache.lease_key(keys, keys.cache(sn), field)) == 0
