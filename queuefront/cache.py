"""The response cache: one Redis hash per serial, one field per cached response.

Why a hash per serial: invalidating a serial must drop every response derived from it
(products, manager data, any query variant) in a constant number of round trips; with
a hash that is one DEL, whatever the number of routes. Redis 7.0 has no per-field TTL,
so each field carries its own expiry time, checked on read, and the hash expires with
its longest-lived field.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from queuefront.envelope import CachedReply, CacheSpec, Reply, decode_cached, encode_cached
from queuefront.keys import Keys


def field(route: str, path_qs: str) -> str:
    return f"{route}|{path_qs}"


async def lookup(redis: Redis, key: str, field: str) -> Reply | None:
    raw: bytes | None = await redis.hget(key, field)  # type: ignore[assignment]
    if raw is None:
        return None
    item = decode_cached(raw)
    return item.reply if item.expires_at > time.time() else None


def store(pipe: Pipeline, spec: CacheSpec, reply: Reply) -> None:
    """Queues the commands that cache ``reply`` on ``pipe`` (the worker's reply pipeline)."""
    value = encode_cached(CachedReply(time.time() + spec.ttl_s, reply))
    pipe.hset(spec.key, spec.field, value)
    # NX sets the TTL of a new hash; GT only ever lengthens it, so a short-lived
    # route never cuts the life of a long-lived sibling in the same hash
    pipe.expire(spec.key, spec.ttl_s, nx=True)
    pipe.expire(spec.key, spec.ttl_s, gt=True)


async def invalidate(redis: Redis, keys: Keys, serial: str) -> bool:
    """Drops every cached response of ``serial``: one round trip."""
    return bool(await redis.delete(keys.cache(serial)))
