"""Cached routes in the api pod: an in-process tier in front of Redis, and one backend
call per missing key.

Why a tier in the pod: a hit served from Redis costs a round trip, about 1.5 requests'
worth of CPU; a hot key (a product on every kiosk's screen) is read thousands of times
per TTL. The tier holds the same entries as Redis, never past their expiry, bounded in
entries and bytes (least recently used go first), and is kept coherent by the
``cache-events`` channel every pod subscribes to: an invalidation drops the serial
everywhere within a pub/sub hop; after the subscription reconnects the whole tier is
dropped, since an invalidation may have been missed meanwhile.

Why flights: concurrent misses of one key in a pod share one ``Flight`` (single
flight); across pods, the first to take the Redis lease fetches and the others wait for
its ``fill`` event (``queuefront.cache``). A flight runs in its own task, so a client
that goes away does not cancel it for the others; each waiter still waits only within
its own deadline.

Why a heartbeat: the lease is short (``QF_CACHE_LEASE_S``), so that the pods waiting
behind a holder that died take over soon; a backend slower than the lease would then
let every waiting pod call it too. The holder renews the lease every third of its
length while its fetch runs (never past the flight's limit) and releases it when the
fetch ends, so the others wait for its answer however long the backend takes.

Stale while revalidate: a route with ``stale_while_revalidate_s`` serves an expired
entry for that long past its TTL while one flight refreshes it in the background.

Invalidation races: an entry fetched before an invalidation must not land in the tier
after it. Every flight notes the serial's invalidation count when it starts and stores
into the tier only if no invalidation of that serial was heard since (Redis closes
the same race with the serial's generation).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from queuefront import cache, clock, metrics, tasks
from queuefront.cache import CacheEvent
from queuefront.envelope import CachedReply, CacheSpec, Reply
from queuefront.failures import FailureLog
from queuefront.keys import Keys
from queuefront.telemetry import get_logger
from service.deadlines import REDIS_CALL_S, Deadline, bounded

log = get_logger(__name__)
FAILURES = FailureLog(log)

RENEWALS_PER_LEASE = 3
"""The holder renews the lease this many times per lease length: two renewals may fail
(a Redis hiccup) before the lease can run out under a fetch still running."""
ENTRY_OVERHEAD_BYTES = 256
"""Accounted per tier entry on top of its body and headers (keys, objects)."""
INVALIDATIONS_REMEMBERED = 10_000
"""Serials whose last invalidation the pod remembers for the race check (then a floor)."""

FLIGHT_LIMIT_S = 30.0
"""Longest one flight may look, wait and fetch (past API Gateway's 29 s, nobody waits)."""

State = Literal["HIT", "STALE", "MISS"]
Fetch = Callable[[CacheSpec], Awaitable[Reply]]
"""Queues a request for a missing entry and returns the reply (raises ApiError)."""


@dataclass(frozen=True)
class Target:
    """One cached response: its serial's hash, its field, the route's cache rule."""

    serial: str
    key: str
    field: str
    ttl_s: int
    stale_s: int
    forwarded: list[str]


@dataclass
class _Entry:
    item: CachedReply
    size: int


class LocalTier:
    """Bounded LRU of cached replies by (hash key, field), with a per-key index for
    invalidation."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._by_key: dict[str, set[str]] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, field_name: str) -> CachedReply | None:
        entry = self._entries.get((key, field_name))
        if entry is None:
            return None
        self._entries.move_to_end((key, field_name))
        return entry.item

    def put(self, key: str, field_name: str, item: CachedReply) -> None:
        reply = item.reply
        headers = sum(len(k) + len(v) for k, v in reply.headers)
        size = ENTRY_OVERHEAD_BYTES + len(reply.body) + headers
        if size > self._max_bytes or self._max_entries <= 0:
            return
        self._remove((key, field_name))
        self._entries[(key, field_name)] = _Entry(item, size)
        self._by_key.setdefault(key, set()).add(field_name)
        self.bytes += size
        while len(self._entries) > self._max_entries or self.bytes > self._max_bytes:
            self._remove(next(iter(self._entries)))

    def drop_key(self, key: str) -> int:
        fields = self._by_key.pop(key, set())
        for name in fields:
            entry = self._entries.pop((key, name), None)
            if entry is not None:
                self.bytes -= entry.size
        return len(fields)

    def clear(self) -> None:
        self._entries.clear()
        self._by_key.clear()
        self.bytes = 0

    def _remove(self, slot: tuple[str, str]) -> None:
        entry = self._entries.pop(slot, None)
        if entry is None:
            return
        self.bytes -= entry.size
        names = self._by_key.get(slot[0])
        if names is not None:
            names.discard(slot[1])
            if not names:
                del self._by_key[slot[0]]


@dataclass
class Flight:
    """One fetch of one missing (or stale) entry, shared by every request that needs it."""

    future: asyncio.Future[tuple[Reply, State]]
    task: asyncio.Task[None] | None = None


class HotCache:
    def __init__(
        self, redis: Redis, keys: Keys, pod_id: str, tier: LocalTier, lease_s: float
    ) -> None:
        """``lease_s``: how long the right to fetch a missing key lasts unrenewed
        (``QF_CACHE_LEASE_S``); the others look again this often, and take over when a
        holder that died stops renewing it."""
        self._redis = redis
        self._store = cache.CacheStore(redis, keys)
        self._leases = cache.Leases(redis, keys)
        self._lease_s = lease_s
        self._keys = keys
        self._pod_id = pod_id
        self.tier = tier
        self._flights: dict[tuple[str, str], Flight] = {}
        self._fills: dict[tuple[str, str], asyncio.Event] = {}
        self._invalidations = 0
        self._last_invalidation: OrderedDict[str, int] = OrderedDict()
        self._forgotten_before = 0
        self._background = tasks.TaskSet("cache")

    # --- events from the cache channel ---------------------------------------------------

    def on_event(self, event: CacheEvent) -> None:
        if event.kind == "inv":
            self._invalidated(event.key)
            dropped = self.tier.drop_key(event.key)
            metrics.CACHE_TIER_DROPS.labels("invalidation").inc(dropped)
        else:
            waiting = self._fills.get((event.key, event.field))
            if waiting is not None:
                waiting.set()

    def on_resubscribe(self) -> None:
        """Invalidations may have been missed while unsubscribed: forget everything."""
        metrics.CACHE_TIER_DROPS.labels("resubscribe").inc(len(self.tier))
        self.tier.clear()
        self._invalidated_everything()

    async def invalidate(self, serial: str) -> bool:
        """Drops ``serial`` everywhere (Redis, every pod's tier); here at once, before the
        event comes back. True when Redis held something for it."""
        dropped = await self._store.invalidate(serial)
        key = self._keys.cache(serial)
        self._invalidated(key)
        self.tier.drop_key(key)
        return dropped

    def _invalidated(self, key: str) -> None:
        self._invalidations += 1
        self._last_invalidation[key] = self._invalidations
        self._last_invalidation.move_to_end(key)
        while len(self._last_invalidation) > INVALIDATIONS_REMEMBERED:
            _, seq = self._last_invalidation.popitem(last=False)
            self._forgotten_before = max(self._forgotten_before, seq)

    def _invalidated_everything(self) -> None:
        self._invalidations += 1
        self._last_invalidation.clear()
        self._forgotten_before = self._invalidations

    def _invalidated_since(self, key: str, seq: int) -> bool:
        return self._last_invalidation.get(key, self._forgotten_before) > seq

    # --- reads ----------------------------------------------------------------------------

    async def get(
        self, target: Target, deadline: Deadline, fetch: Fetch, route: str
    ) -> tuple[Reply, State]:
        """The cached answer, a stale one (with a refresh started), or the answer of the
        one flight that fetches it."""
        now = clock.now()
        item = self.tier.get(target.key, target.field)
        if item is not None:
            if item.fresh(now):
                metrics.child(metrics.CACHE_REQUESTS, route, "hit", "local").inc()
                return item.reply, "HIT"
            if item.usable_stale(now):
                metrics.child(metrics.CACHE_REQUESTS, route, "stale", "local").inc()
                self._refresh(target, fetch, route)
                return item.reply, "STALE"
        flight = self._flights.get((target.key, target.field))
        if flight is not None and not flight.future.done():
            metrics.child(metrics.CACHE_REQUESTS, route, "coalesced", "none").inc()
            return await _within(flight.future, deadline)
        flight = self._start(target, fetch, route, count=True)
        return await _within(flight.future, deadline)

    def _refresh(self, target: Target, fetch: Fetch, route: str) -> None:
        """One background flight refreshes a stale entry (none if one already runs)."""
        if (target.key, target.field) in self._flights:
            return
        flight = self._start(target, fetch, route, count=False)
        flight.future.add_done_callback(_swallow)

    def _start(self, target: Target, fetch: Fetch, route: str, *, count: bool) -> Flight:
        """Registers the flight BEFORE its first await, so every concurrent miss of the
        key in this pod finds it."""
        slot = (target.key, target.field)
        flight = Flight(asyncio.get_running_loop().create_future())
        self._flights[slot] = flight
        flight.task = self._background.spawn(self._fly(target, fetch, route, count, flight))
        return flight

    async def _fly(
        self, target: Target, fetch: Fetch, route: str, count: bool, flight: Flight
    ) -> None:
        slot = (target.key, target.field)
        try:
            await self._fetch_once(target, fetch, route, count, flight)
        except BaseException as exc:  # the waiters get the same error as the leader
            if not flight.future.done():
                flight.future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            if self._flights.get(slot) is flight:
                del self._flights[slot]

    async def _fetch_once(
        self, target: Target, fetch: Fetch, route: str, count: bool, flight: Flight
    ) -> None:
        """Looks in Redis; on a miss (or a stale entry) takes the lease and fetches, or
        waits for the pod that holds it. A stale entry answers the waiters at once while
        the refresh goes on. Bounded: the fetch itself runs under its own window."""
        seq = self._invalidations
        deadline = Deadline(FLIGHT_LIMIT_S)
        lease = cache.lease_key(self._keys, target.key, target.field)

        def answer(reply: Reply, state: State, result: str, tier: str) -> None:
            if not flight.future.done():
                if count:
                    metrics.child(metrics.CACHE_REQUESTS, route, result, tier).inc()
                flight.future.set_result((reply, state))

        while True:
            found = await bounded(
                "redis",
                "cache look-up",
                deadline.bound(REDIS_CALL_S),
                cache.lookup(self._redis, self._keys, target.serial, target.field),
            )
            now = clock.now()  # the worker wrote the entry's expiry on the same clock
            if found.entry is not None and found.entry.fresh(now):
                self._keep(target, found.entry, seq)
                answer(found.entry.reply, "HIT", "hit", "redis")
                return
            if found.entry is not None and found.entry.usable_stale(now):
                self._keep(target, found.entry, seq)
                answer(found.entry.reply, "STALE", "stale", "redis")
            # listen before asking: the holder's fill may come right after our refusal
            filled = self._fills.setdefault((target.key, target.field), asyncio.Event())
            holder = f"{self._pod_id}:{uuid.uuid4().hex}"
            won = await bounded(
                "redis",
                "cache lease",
                deadline.bound(REDIS_CALL_S),
                cache.take_lease(self._redis, lease, holder, self._lease_s),
            )
            if won:
                self._stop_listening(target, filled)
                try:
                    async with tasks.running(
                        self._hold(lease, holder, deadline), name="lease-heartbeat"
                    ):
                        reply = await self._fetch(target, fetch, seq, found.generation)
                finally:
                    # normally the worker's store freed it already; if that failed, the
                    # pods waiting for this key must not wait for the lease to run out
                    self._spawn(self._leases.release(lease, holder, target.key, target.field))
                answer(reply, "MISS", "miss", "none")
                return
            await self._await_fill(target, deadline, filled)  # then look again

    async def _hold(self, lease: str, holder: str, deadline: Deadline) -> None:
        """Renews ``holder``'s lease while its fetch runs, until the flight's deadline;
        stops when the lease is no longer its own (the worker's store released it)."""
        every_s = self._lease_s / RENEWALS_PER_LEASE
        while deadline.left() > every_s:
            await asyncio.sleep(every_s)
            try:
                async with asyncio.timeout(min(REDIS_CALL_S, every_s)):
                    if not await self._leases.extend(lease, holder, self._lease_s):
                        return
            except (RedisError, OSError, TimeoutError) as exc:
                FAILURES.note("cache lease not renewed", exc)

    async def _fetch(self, target: Target, fetch: Fetch, seq: int, generation: int) -> Reply:
        started = clock.now()
        spec = CacheSpec(
            key=target.key,
            field=target.field,
            ttl_s=target.ttl_s,
            stale_s=target.stale_s,
            generation_key=self._keys.cache_generation(target.serial),
            generation=generation,
            forwarded=target.forwarded,
        )
        # refused or failed before a worker had it: the caller frees the lease
        reply = await fetch(spec)
        if reply.cached:
            # expires no later than the worker's copy: the clock started before it did
            expires_at = started + target.ttl_s
            self._keep(target, CachedReply(expires_at, reply, expires_at + target.stale_s), seq)
        return reply

    async def _await_fill(
        self, target: Target, deadline: Deadline, filled: asyncio.Event
    ) -> None:
        """Until the lease holder's fill event (or the lease's end: the holder may be gone)."""
        try:
            async with asyncio.timeout(deadline.bound(self._lease_s)):
                await filled.wait()
        except TimeoutError:
            if deadline.left() <= 0:
                raise
        finally:
            self._stop_listening(target, filled)

    def _stop_listening(self, target: Target, filled: asyncio.Event) -> None:
        slot = (target.key, target.field)
        if self._fills.get(slot) is filled:
            del self._fills[slot]

    def _spawn(self, coro: Awaitable[object]) -> None:
        async def quietly() -> None:
            try:
                async with asyncio.timeout(REDIS_CALL_S):
                    await coro
            except Exception as exc:
                log.debug("lease release failed", error=str(exc))

        self._background.spawn(quietly())

    def _keep(self, target: Target, item: CachedReply, seq: int) -> None:
        if not self._invalidated_since(target.key, seq):
            self.tier.put(target.key, target.field, item)

    async def close(self) -> None:
        await self._background.stop()


async def _within(
    future: asyncio.Future[tuple[Reply, State]], deadline: Deadline
) -> tuple[Reply, State]:
    """Waits for a shared flight without cancelling it for the others."""
    async with asyncio.timeout(max(0.001, deadline.left())):
        return await asyncio.shield(future)


def _swallow(future: asyncio.Future[tuple[Reply, State]]) -> None:
    if not future.cancelled():
        future.exception()
