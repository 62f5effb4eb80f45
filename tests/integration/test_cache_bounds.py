"""What a serial's cache hash may hold in Redis: at most MAX_FIELDS_PER_SERIAL responses,
and never longer than its longest-lived one (a hash that keeps receiving writes must not
grow or live for ever). Against the real Redis."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from queuefront.cache import MAX_FIELDS_PER_SERIAL, CacheStore
from queuefront.envelope import CacheSpec, Reply
from queuefront.keys import Keys


def spec(keys: Keys, serial: str, field: str, ttl_s: int, stale_s: int = 0) -> CacheSpec:
    return CacheSpec(
        key=keys.cache(serial),
        field=field,
        ttl_s=ttl_s,
        stale_s=stale_s,
        generation_key=keys.cache_generation(serial),
        generation=0,
    )


def reply(i: int) -> Reply:
    return Reply(id=f"r{i}", status=200, headers=[], body=b"x")


async def test_a_serial_holds_a_bounded_number_of_responses(redis: Redis) -> None:
    keys = Keys(prefix=f"qft:{uuid.uuid4().hex[:10]}:")
    store = CacheStore(redis, keys)
    key = keys.cache("SN-many")
    # e.g. one field per query string or Accept-Language value: a client can make many
    for i in range(MAX_FIELDS_PER_SERIAL + 40):
        assert await store.store(spec(keys, "SN-many", f"GET /p?{i}", ttl_s=60), reply(i))
        assert await redis.hlen(key) <= MAX_FIELDS_PER_SERIAL
    assert await redis.hlen(key) >= 1
    await redis.delete(key)


async def test_a_serial_expires_with_its_longest_lived_response(redis: Redis) -> None:
    keys = Keys(prefix=f"qft:{uuid.uuid4().hex[:10]}:")
    store = CacheStore(redis, keys)
    key = keys.cache("SN-ttl")
    await store.store(spec(keys, "SN-ttl", "GET /a", ttl_s=30), reply(1))
    assert 0 < await redis.ttl(key) <= 30
    # a longer-lived field (TTL + stale window) extends the hash...
    await store.store(spec(keys, "SN-ttl", "GET /b", ttl_s=100, stale_s=20), reply(2))
    assert 100 < await redis.ttl(key) <= 120
    # ...and a shorter one never shortens it
    await store.store(spec(keys, "SN-ttl", "GET /c", ttl_s=5), reply(3))
    assert 100 < await redis.ttl(key) <= 120
    await redis.delete(key)
