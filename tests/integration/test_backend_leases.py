"""The shared backend limit's leases (``workers.priority.leases``) against the real Redis:
several holders in one test process, each standing for a worker process.

The limit holds across holders; a holder's waiting slots are served first come, first
served; a release wakes another holder's waiter at once (not at its fallback retry); a
holder that dies holding leases frees them within the TTL, one that lives keeps them by
renewing; a Redis that lost the set gets the held leases back; a slot that cannot wait
longer gets None and leaves nothing held behind; with Redis away nothing is granted."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis

from devstack import eventually, free_port, start_redis
from queuefront import tasks
from queuefront.keys import Keys
from tests.conftest import REDIS_URL
from workers.priority.leases import BackendLeases

SHORT_TTL_S = 0.6
SLOW_RETRY_S = 5.0
"""A fallback retry much longer than anything a test waits: what comes sooner was woken."""


@asynccontextmanager
async def _keys(redis: Redis) -> AsyncIterator[Keys]:
    keys = Keys(f"qft:leases-{uuid.uuid4().hex[:8]}:")
    try:
        yield keys
    finally:
        found = [k async for k in redis.scan_iter(match=f"{keys.prefix}*")]
        if found:
            await redis.delete(*found)


@asynccontextmanager
async def _holder(
    redis: Redis,
    keys: Keys,
    limit: int,
    *,
    ttl_s: float = 10.0,
    retry_s: float = SLOW_RETRY_S,
    url: str = REDIS_URL,
    close: bool = True,
) -> AsyncIterator[BackendLeases]:
    """One worker's leases with its loops running; ``close=False``: it dies, releasing
    nothing (a SIGKILL)."""
    client = redis if url == REDIS_URL else Redis.from_url(url, socket_timeout=0.5)
    subscriber = Redis.from_url(url, socket_connect_timeout=0.5)
    leases = BackendLeases(
        client, subscriber, keys, f"w-{uuid.uuid4().hex[:6]}", limit, ttl_s=ttl_s, retry_s=retry_s
    )
    owner = tasks.TaskSet("leases")
    for coro, name in leases.loops():
        owner.spawn(coro, name=name)
    try:
        yield leases
    finally:
        await owner.stop()
        if close:
            await leases.close()
        await subscriber.aclose()
        if client is not redis:
            await client.aclose()


async def test_the_limit_holds_across_holders_and_everyone_is_served(redis: Redis) -> None:
    """Three holders, limit 4, 30 slots each wanting one short call: never more than 4
    leases at once (counted by the callers and in Redis), and every slot gets one."""
    async with _keys(redis) as keys:
        in_flight = 0
        most = 0
        most_in_redis = 0

        async def call(leases: BackendLeases) -> bool:
            nonlocal in_flight, most, most_in_redis
            lease = await leases.acquire(10.0)
            if lease is None:
                return False
            in_flight += 1
            most = max(most, in_flight)
            most_in_redis = max(most_in_redis, await redis.zcard(keys.backend_leases()))
            await asyncio.sleep(0.03)
            in_flight -= 1
            leases.release(lease)
            return True

        async with (
            _holder(redis, keys, 4) as a,
            _holder(redis, keys, 4) as b,
            _holder(redis, keys, 4) as c,
        ):
            served = await asyncio.gather(*(call(h) for h in (a, b, c) for _ in range(10)))
        assert all(served)
        assert most == 4, most
        assert most_in_redis <= 4, most_in_redis
        assert await redis.zcard(keys.backend_leases()) == 0  # all released


async def test_a_holders_waiting_slots_are_served_first_come_first_served(redis: Redis) -> None:
    async with _keys(redis) as keys, _holder(redis, keys, 1) as leases:
        first = await leases.acquire(1.0)
        assert first is not None
        order: list[int] = []

        async def wait(i: int) -> None:
            lease = await leases.acquire(5.0)
            assert lease is not None
            order.append(i)
            await asyncio.sleep(0.02)
            leases.release(lease)

        waiting = []
        for i in range(5):
            waiting.append(asyncio.create_task(wait(i)))
            await asyncio.sleep(0.01)  # each queues after the one before
        leases.release(first)
        await asyncio.gather(*waiting)
        assert order == [0, 1, 2, 3, 4]


async def test_a_release_wakes_another_holders_waiter_at_once(redis: Redis) -> None:
    """The waiter's fallback retry is 5 s: it gets the lease within a fraction of a second
    of the release because the release was announced."""
    async with (
        _keys(redis) as keys,
        _holder(redis, keys, 1) as a,
        _holder(redis, keys, 1) as b,
    ):
        lease = await a.acquire(1.0)
        assert lease is not None
        waiter = asyncio.create_task(b.acquire(4.0))
        await asyncio.sleep(0.3)  # b found the limit full and waits
        assert not waiter.done()
        released_at = time.monotonic()
        a.release(lease)
        got = await waiter
        assert got is not None
        assert time.monotonic() - released_at < 0.5


async def test_a_dead_holders_leases_free_within_the_ttl(redis: Redis) -> None:
    """A holds both leases and dies without releasing them (its loops stop, nothing is
    given back): B's slot gets one once they expire, within the TTL and a retry."""
    async with _keys(redis) as keys, _holder(redis, keys, 1, retry_s=0.2) as b:
        async with _holder(redis, keys, 2, ttl_s=SHORT_TTL_S, close=False) as a:
            held = [await a.acquire(1.0), await a.acquire(1.0)]
            assert None not in held
        died_at = time.monotonic()
        lease = await b.acquire(5.0)
        assert lease is not None
        assert time.monotonic() - died_at < SHORT_TTL_S + 0.5


async def test_a_live_holder_keeps_its_lease_past_the_ttl(redis: Redis) -> None:
    """Renewed every third of the TTL: a call of four TTLs keeps its lease, and nobody
    else gets one meanwhile."""
    async with (
        _keys(redis) as keys,
        _holder(redis, keys, 1, ttl_s=SHORT_TTL_S) as a,
        _holder(redis, keys, 1, retry_s=0.1) as b,
    ):
        lease = await a.acquire(1.0)
        assert lease is not None
        assert await b.acquire(4 * SHORT_TTL_S) is None
        a.release(lease)
        assert await b.acquire(1.0) is not None


async def test_renewal_puts_back_the_leases_a_restarted_redis_lost(redis: Redis) -> None:
    async with _keys(redis) as keys, _holder(redis, keys, 2, ttl_s=SHORT_TTL_S) as a:
        lease = await a.acquire(1.0)
        assert lease is not None
        await redis.delete(keys.backend_leases())  # what a Redis restart leaves

        async def back() -> bool:
            return await redis.zscore(keys.backend_leases(), lease) is not None

        await eventually(back, SHORT_TTL_S, "the held lease re-added by its renewal")


async def test_a_slot_that_cannot_wait_longer_gets_none_and_nothing_stays_held(
    redis: Redis,
) -> None:
    async with (
        _keys(redis) as keys,
        _holder(redis, keys, 1) as a,
        _holder(redis, keys, 1, retry_s=0.05) as b,
    ):
        lease = await a.acquire(1.0)
        assert lease is not None
        started = time.monotonic()
        assert await b.acquire(0.3) is None
        assert time.monotonic() - started < 0.5
        assert await b.acquire(0) is None  # no time at all: not even asked
        a.release(lease)
        await asyncio.sleep(0.3)  # b's acquirer would grab a lease for a slot gone
        assert b.held == 0
        assert await redis.zcard(keys.backend_leases()) == 0


async def test_with_redis_away_nothing_is_granted(redis: Redis) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with _keys(redis) as keys, _holder(redis, keys, 5, url=dead) as leases:
        assert await leases.acquire(0.5) is None
        assert not leases.redis_ok
        assert leases.held == 0


async def test_a_lease_granted_after_its_slot_gave_up_goes_back(log_dir: Path) -> None:
    """Redis stands still (SIGSTOP) while the acquirer's request is out; the slot stops
    waiting before the answer comes. The lease Redis then grants has nobody to go to: it is
    released at once, not left counting against the limit."""
    url, proc = await start_redis(log_dir)
    redis = Redis.from_url(url)
    try:
        async with _keys(redis) as keys, _holder(redis, keys, 1, url=url) as leases:
            proc.signal(signal.SIGSTOP)
            try:
                assert await leases.acquire(0.1) is None
            finally:
                proc.signal(signal.SIGCONT)

            async def nothing_held() -> bool:
                return await redis.zcard(keys.backend_leases()) == 0 and leases.held == 0

            await asyncio.sleep(0.3)  # the grant has come back by now
            await eventually(nothing_held, 2.0, "the orphan grant released")
            assert await leases.acquire(1.0) is not None  # and the limit is free again
    finally:
        await redis.aclose()
        proc.stop()
