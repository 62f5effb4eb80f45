"""The shared response cache in Redis: one hash per serial, a generation per serial, leases.

Why a hash per serial: invalidating a serial must drop every response derived from it
(products, manager data, any query variant) in a constant number of round trips; with
a hash that is one DEL, whatever the number of routes. Redis 7.0 has no per-field TTL,
so each field carries its own expiry time, checked on read; the hash expires with its
longest-lived field, and is emptied when it holds more than ``MAX_FIELDS_PER_SERIAL``
fields, so a serial that keeps receiving writes with new query strings cannot grow
without bound.

Why a generation: a reply computed *before* an invalidation must not refill the cache
*after* it. The api reads ``cachegen:<serial>`` with its look-up and sends it along
with the request; the worker stores the reply only if the generation is still the
same (one Lua call), and invalidation increments it (one Lua call).

Why a lease: N pods missing the same key at once would make N backend calls (the
stampede after a TTL ends). The first pod to ``SET NX`` the lease makes the call; the
others wait for the ``fill`` event on the cache channel and read the stored answer.
The lease is short (a holder that dies must not block the key for long) and its holder
renews it while its call runs (``extend_lease``), so a backend slower than the lease
still gets one call; only the holder's token renews or releases it.

Every store, failed store and invalidation is announced on ``cache-events``, which
every api pod subscribes to for its in-process tier (``service.hotcache``).
"""

from __future__ import annotations

import hashlib
from typing import Literal

import msgspec
from redis.asyncio import Redis

from queuefront import clock
from queuefront.envelope import CachedReply, CacheSpec, Reply, decode_cached, encode_cached
from queuefront.keys import Keys

MAX_FIELDS_PER_SERIAL = 256
"""Cached responses (routes x query variants) kept per serial before the hash is reset."""
GENERATION_TTL_S = 7 * 24 * 3600
"""How long a serial's generation outlives its last invalidation. A request whose look-up
read a generation that has since expired only loses its store (it is never wrongly
stored): the comparison fails safe."""
UNCACHEABLE_CONTROL = frozenset({"private", "no-store", "no-cache"})


class CacheEvent(msgspec.Struct, frozen=True, array_like=True):
    """Published on ``cache-events``: ``inv`` (a serial was invalidated) or ``fill`` (a
    cached route's request finished; ``stored`` says whether Redis has its answer)."""

    kind: Literal["inv", "fill"]
    key: str
    field: str = ""
    stored: bool = False


_event_encoder = msgspec.msgpack.Encoder()
_event_decoder = msgspec.msgpack.Decoder(CacheEvent)


def encode_event(event: CacheEvent) -> bytes:
    return _event_encoder.encode(event)


def decode_event(data: bytes) -> CacheEvent:
    return _event_decoder.decode(data)


def field(route: str, target: str, vary: list[tuple[str, str]] | None = None) -> str:
    """One response's field in its serial's hash: route, upstream target and the values
    of the headers the route forwards (they are part of what the backend answered)."""
    if not vary:
        return f"{route}|{target}"
    extra = "&".join(f"{k.lower()}={v}" for k, v in vary)
    return f"{route}|{target}|{extra}"


def lease_key(keys: Keys, cache_key: str, field_name: str) -> str:
    digest = hashlib.blake2b(f"{cache_key}\x00{field_name}".encode(), digest_size=12)
    return keys.cache_lease(digest.hexdigest())


class Lookup(msgspec.Struct, frozen=True):
    """What Redis holds for one field: the entry (if any) and the serial's generation."""

    entry: CachedReply | None
    generation: int


async def lookup(redis: Redis, keys: Keys, serial: str, field_name: str) -> Lookup:
    """One round trip: the field and the serial's generation."""
    pipe = redis.pipeline(transaction=False)
    pipe.hget(keys.cache(serial), field_name)
    pipe.get(keys.cache_generation(serial))
    raw, gen = await pipe.execute()
    entry = decode_cached(raw) if raw is not None else None
    return Lookup(entry, int(gen or 0))


async def take_lease(redis: Redis, lease: str, holder: str, ttl_s: float) -> bool:
    """True when this caller may make the backend call for a missing field."""
    return bool(await redis.set(lease, holder, nx=True, px=max(1, int(ttl_s * 1000))))


# KEYS: lease. ARGV: holder token, TTL (ms).
_EXTEND = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: lease. ARGV: holder token, event channel, fill event (not stored).
_RELEASE_MINE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""


class Leases:
    """The holder's side of the leases: renew one while its call runs, release it after
    (a no-op when the worker's store already did, or another holder has it now)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._keys = keys
        self._extend = redis.register_script(_EXTEND)
        self._release = redis.register_script(_RELEASE_MINE)

    async def extend(self, lease: str, holder: str, ttl_s: float) -> bool:
        """False when the lease is no longer ``holder``'s (released, or expired)."""
        ms = max(1, int(ttl_s * 1000))
        return bool(await self._extend(keys=[lease], args=[holder, ms]))

    async def release(self, lease: str, holder: str, cache_key: str, field_name: str) -> bool:
        """Frees ``holder``'s lease and wakes the pods waiting for it (they look again)."""
        event = encode_event(CacheEvent("fill", cache_key, field_name, False))
        return bool(
            await self._release(keys=[lease], args=[holder, self._keys.cache_events(), event])
        )


def cacheable(reply: Reply, forwarded: frozenset[str]) -> bool:
    """Only a 2xx answer that is the same for everyone who sends the same key may be
    shared: nothing that sets a cookie, is marked private/no-store/no-cache, or varies
    on a request header the key does not hold."""
    if not 200 <= reply.status < 300:
        return False
    for name, value in reply.headers:
        lower = name.lower()
        if lower == "set-cookie":
            return False
        if lower == "cache-control":
            directives = {d.split("=", 1)[0].strip().lower() for d in value.split(",")}
            if directives & UNCACHEABLE_CONTROL:
                return False
        if lower == "vary":
            varied = {v.strip().lower() for v in value.split(",") if v.strip()}
            if "*" in varied or not varied <= forwarded:
                return False
    return True


# KEYS: hash, generation, lease. ARGV: field, value, generation read at look-up, hash
# TTL (s), max fields, event channel, fill event (stored), fill event (not stored).
_STORE = """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[3])
  redis.call('PUBLISH', ARGV[6], ARGV[8])
  return 0
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = redis.call('TTL', KEYS[1])
if ttl < tonumber(ARGV[4]) then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
redis.call('DEL', KEYS[3])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
"""

# KEYS: hash, generation. ARGV: generation TTL (s), event channel, invalidation event.
_INVALIDATE = """
local dropped = redis.call('DEL', KEYS[1])
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return dropped
"""

# KEYS: lease. ARGV: event channel, fill event (not stored).
_RELEASE = """
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"""


class CacheStore:
    """The worker's and the api's writes to the shared cache: one round trip each."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._keys = keys
        self._store = redis.register_script(_STORE)
        self._invalidate = redis.register_script(_INVALIDATE)
        self._release = redis.register_script(_RELEASE)

    async def store(self, spec: CacheSpec, reply: Reply) -> bool:
        """Stores ``reply`` unless the serial was invalidated since the look-up; announces
        the outcome either way (waiting pods stop waiting). True when stored."""
        expires_at = clock.now() + spec.ttl_s  # every pod compares it with its clock.now()
        value = encode_cached(CachedReply(expires_at, reply, expires_at + spec.stale_s))
        lease = lease_key(self._keys, spec.key, spec.field)
        stored = await self._store(
            keys=[spec.key, spec.generation_key, lease],
            args=[
                spec.field,
                value,
                spec.generation,
                spec.ttl_s + spec.stale_s,
                MAX_FIELDS_PER_SERIAL,
                self._keys.cache_events(),
                encode_event(CacheEvent("fill", spec.key, spec.field, True)),
                encode_event(CacheEvent("fill", spec.key, spec.field, False)),
            ],
        )
        return bool(stored)

    async def not_stored(self, spec: CacheSpec) -> None:
        """A cached route's answer that may not be shared: free the lease, wake waiters."""
        await self._release(
            keys=[lease_key(self._keys, spec.key, spec.field)],
            args=[
                self._keys.cache_events(),
                encode_event(CacheEvent("fill", spec.key, spec.field, False)),
            ],
        )

    async def invalidate(self, serial: str) -> bool:
        """Drops every cached response of ``serial`` and bumps its generation, so no reply
        computed before now can refill it; every pod's tier hears of it. One round trip."""
        key = self._keys.cache(serial)
        dropped = await self._invalidate(
            keys=[key, self._keys.cache_generation(serial)],
            args=[
                GENERATION_TTL_S,
                self._keys.cache_events(),
                encode_event(CacheEvent("inv", key)),
            ],
        )
        return bool(dropped)
