"""A limit on backend calls shared by every worker of one Redis (``QF_BACKEND_MAX_CONCURRENCY``).

Why. ``QF_WORKER_CONCURRENCY`` bounds one worker; the backend sees that times the number of
workers. Bounding the backend that way makes the deployment do the arithmetic (most tasks,
times a deploy's overlap, times the slots, within the backend's limit), so each task gets
few slots, and in a brownout (calls ten times slower) the fleet cannot hold all the
backend's slots: only more tasks add calls, a minute or more later. A backend call is an
I/O wait; a worker holds a hundred of them cheaply. With the bound held here, at run time,
a task's slots can be many and the bound holds whatever the number of tasks, a deploy's
overlap included.

How. A sorted set in Redis (``Keys.backend_leases``) holds one member per backend call in
flight, ``<worker id>:<n>``, scored by its lease's expiry in milliseconds on the reference
clock (``queuefront.clock``: Redis's, not the host's, so every process agrees on what has
expired). A lease is granted by a Lua script that drops the expired members and adds new
ones while the set has fewer than the limit.

- One acquirer per process. Slots that want a lease queue up (first come, first served) and
  the acquirer asks for as many as wait, in one script call; the slots never poll Redis
  themselves. What it cannot grant waits for a release: a release is announced on a channel
  (``Keys.backend_leases_freed``) that every worker listens to, so waiting workers try again
  at once. A lease that expires announces nothing, so a blocked acquirer also tries again
  after about ``RETRY_S`` (jittered: the workers do not come back in step). Releases are
  announced only while some worker is blocked (``Keys.backend_leases_waiting``, set for a
  moment by the script that found the set full): a fleet below its limit publishes nothing.
- One keeper per process renews every lease it holds every ``LEASE_TTL_S`` / 3 and removes
  released ones, in one script call for all (releases that come while one is in flight go
  together in the next). Renewals and releases go through this one task, in order, so a
  renewal can never re-add a lease released before it.
- A worker killed while holding leases (SIGKILL, a lost task) renews nothing: its leases
  expire within ``LEASE_TTL_S`` and the others take them.

Redis restarting (its data gone). The set is empty, so for up to ``LEASE_TTL_S`` / 3 after
Redis is back (until every worker's next renewal) the calls already running are not counted
and up to the limit's worth of new calls may be granted beside them. Renewal re-adds the
leases a worker holds (whatever the limit: those calls run already), so from then on every
call is counted again and no new lease is granted until the total falls below the limit.
At worst, then, the backend sees up to twice the limit, for as long as the calls that were
running when Redis came back last (at most their windows). The same holds when Redis is
away longer than ``LEASE_TTL_S`` without losing its data (the leases expire there).

Redis away (unreachable, slow, loading). Nothing is granted: a call without a lease is never
made. The acquirer keeps trying (with back-off) for as long as slots wait, and each slot
waits no longer than its own budget (``workers.priority.handle``). A lease granted while
Redis answers is not taken back when it goes away: its call was counted when it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Coroutine, Sequence
from itertools import count
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from queuefront import clock, metrics
from queuefront.backoff import Backoff
from queuefront.failures import FailureLog
from queuefront.keys import Keys
from queuefront.telemetry import get_logger

log = get_logger(__name__)
FAILURES = FailureLog(log)

LEASE_TTL_S = 10.0
"""How long a lease lasts unrenewed: a killed worker's calls count against the limit at
most this long after it died. Renewed every third of it, so two renewals in a row may fail
(a Redis hiccup) before a live worker's lease expires."""
RETRY_S = 0.5
"""A blocked acquirer tries again after about this long (0.5 to 1.5 times it) even when no
release was announced: what frees a lease by expiry announces nothing."""
WAITING_FLAG_S = 3 * RETRY_S
"""How long a blocked acquirer's flag asks releasers to announce: longer than its retry, so
it stays set while anyone is blocked."""
CALL_TIMEOUT_S = 2.0
"""One lease script's round trip; a longer silence counts as Redis away."""
FAILURE_BACKOFF = Backoff(first_s=0.05, cap_s=1.0, jitter="full")
"""Pause before the acquirer or the keeper tries again after Redis failed to answer."""

# KEYS: leases, waiting flag. ARGV: now (ms), expiry (ms), limit, key TTL (ms),
# waiting flag TTL (ms), members wanted...
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local free = tonumber(ARGV[3]) - redis.call('ZCARD', KEYS[1])
local granted = {}
for i = 6, #ARGV do
  if free <= 0 then break end
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
  granted[#granted + 1] = ARGV[i]
  free = free - 1
end
if #granted > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
if #granted < #ARGV - 5 then redis.call('SET', KEYS[2], '1', 'PX', ARGV[5]) end
return granted
"""

# KEYS: leases, waiting flag. ARGV: channel, expiry (ms), key TTL (ms), number released,
# released members..., renewed members...
_KEEP = """
local released = tonumber(ARGV[4])
local freed = 0
for i = 5, 4 + released do
  freed = freed + redis.call('ZREM', KEYS[1], ARGV[i])
end
if #ARGV > 4 + released then
  for i = 5 + released, #ARGV do
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
if freed > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('PUBLISH', ARGV[1], freed)
end
return freed
"""


class BackendLeases:
    """This process's share of the backend limit (see the module notes). Its ``loops``
    must run for anything to be granted, renewed or released."""

    def __init__(
        self,
        redis: Redis,
        subscriber: Redis,
        keys: Keys,
        holder: str,
        limit: int,
        *,
        ttl_s: float = LEASE_TTL_S,
        retry_s: float = RETRY_S,
    ) -> None:
        self._redis = redis
        self._subscriber = subscriber
        """A client without a socket timeout: its pub/sub connection waits for messages."""
        self._keys = keys
        self._holder = holder
        self.limit = limit
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._retry_s = retry_s
        self._acquire = redis.register_script(_ACQUIRE)
        self._keep = redis.register_script(_KEEP)
        self._numbers = count()
        self._waiters: deque[asyncio.Future[str]] = deque()
        self._held: set[str] = set()
        """Leases this process holds in Redis (granted, not yet released): the keeper
        renews them."""
        self._to_release: list[str] = []
        self._arrived = asyncio.Event()
        """A slot started waiting: the acquirer, if idle, asks at once."""
        self._freed = asyncio.Event()
        """A lease was released (here, or announced by another worker): a blocked acquirer
        asks again at once."""
        self._releasing = asyncio.Event()
        self.redis_ok = True
        """Whether Redis answered the acquirer's last request (a refusal's reason)."""

    @property
    def held(self) -> int:
        return len(self._held)

    # --- what a slot calls ------------------------------------------------------------------

    async def acquire(self, wait_s: float) -> str | None:
        """A lease, waited for at most ``wait_s`` (None: none came in time). The caller
        must ``release`` it once its backend call has ended."""
        if wait_s <= 0:
            return None
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._arrived.set()
        try:
            await asyncio.wait({waiter}, timeout=wait_s)
        except asyncio.CancelledError:
            self._give_up(waiter)
            raise
        if waiter.done():
            return waiter.result()
        self._give_up(waiter)
        return None

    def _give_up(self, waiter: asyncio.Future[str]) -> None:
        """The slot stops waiting: a lease granted to it meanwhile goes back."""
        if waiter.done() and not waiter.cancelled():
            self.release(waiter.result())
            return
        waiter.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def release(self, lease: str) -> None:
        """Gives a lease back (in the background: the slot does not wait for Redis). If
        Redis does not take the release, the lease expires within ``LEASE_TTL_S``."""
        if lease not in self._held:
            return
        self._held.discard(lease)
        metrics.BACKEND_LEASES_HELD.set(len(self._held))
        self._to_release.append(lease)
        self._releasing.set()

    # --- the process's tasks ----------------------------------------------------------------

    def loops(self) -> list[tuple[Coroutine[Any, Any, None], str]]:
        """The acquirer, the keeper and the release listener, each with its task name: the
        worker runs them until it stops, then calls ``close``."""
        return [
            (self._acquire_loop(), "lease-acquire"),
            (self._keep_loop(), "lease-keep"),
            (self._listen_loop(), "lease-listen"),
        ]

    async def close(self) -> None:
        """Once the loops are stopped: what is still held is released (one try; what Redis
        does not take expires within ``LEASE_TTL_S``)."""
        leftover = [*self._to_release, *self._held]
        self._held.clear()
        self._to_release.clear()
        metrics.BACKEND_LEASES_HELD.set(0)
        if leftover:
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    await self._keep_call(leftover, [])
            except (RedisError, OSError, TimeoutError) as exc:
                FAILURES.note("backend leases not released at stop", exc)

    def _live_waiters(self) -> int:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()
        return sum(1 for w in self._waiters if not w.done())

    async def _acquire_loop(self) -> None:
        failures = 0
        while True:
            while not self._live_waiters():
                self._arrived.clear()
                await self._arrived.wait()
            self._freed.clear()  # a release from here on wakes the pause below
            wanted = self._live_waiters()
            members = [f"{self._holder}:{next(self._numbers)}" for _ in range(wanted)]
            try:
                granted = await self._acquire_call(members)
            except (RedisError, OSError, TimeoutError) as exc:
                failures += 1
                self.redis_ok = False
                FAILURES.note("backend lease request failed, retrying", exc)
                await self._pause(FAILURE_BACKOFF(failures))
                continue
            failures = 0
            self.redis_ok = True
            self._held.update(granted)
            metrics.BACKEND_LEASES_HELD.set(len(self._held))
            for lease in granted:
                self._hand_out(lease)
            if len(granted) < wanted:
                # the limit is full: until a release is announced, or the fallback retry
                await self._pause(self._retry_s * (0.5 + random.random()))

    def _hand_out(self, lease: str) -> None:
        """To the slot that has waited longest; back at once if none waits any more."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(lease)
                return
        self.release(lease)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._freed.wait()

    async def _acquire_call(self, members: Sequence[str]) -> list[str]:
        now_ms = int(clock.now() * 1000)
        args: list[Any] = [
            now_ms,
            now_ms + self._ttl_ms,
            self.limit,
            2 * self._ttl_ms,
            max(1, int(WAITING_FLAG_S * 1000)),
            *members,
        ]
        keys = [self._keys.backend_leases(), self._keys.backend_leases_waiting()]
        async with asyncio.timeout(CALL_TIMEOUT_S):
            granted = await self._acquire(keys=keys, args=args)
        return [g.decode() if isinstance(g, bytes) else str(g) for g in granted]

    async def _keep_call(self, released: Sequence[str], renewed: Sequence[str]) -> int:
        expiry_ms = int(clock.now() * 1000) + self._ttl_ms
        args: list[Any] = [
            self._keys.backend_leases_freed(),
            expiry_ms,
            2 * self._ttl_ms,
            len(released),
            *released,
            *renewed,
        ]
        keys = [self._keys.backend_leases(), self._keys.backend_leases_waiting()]
        return int(await self._keep(keys=keys, args=args))

    async def _keep_loop(self) -> None:
        """Releases as they come (together while one call is in flight) and renewals every
        third of the TTL, in one task so that they reach Redis in order."""
        loop = asyncio.get_running_loop()
        renew_every_s = self._ttl_ms / 1000 / 3
        renew_at = loop.time() + renew_every_s
        failures = 0
        while True:
            if not self._to_release:
                self._releasing.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, renew_at - loop.time())):
                        await self._releasing.wait()
            released, self._to_release = self._to_release, []
            renewing = loop.time() >= renew_at
            renewed = list(self._held) if renewing else []
            if not released and not renewed:
                if renewing:
                    renew_at = loop.time() + renew_every_s
                continue
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    await self._keep_call(released, renewed)
            except (RedisError, OSError, TimeoutError) as exc:
                # released leases expire by themselves; a renewal is tried again soon
                failures += 1
                FAILURES.note("backend lease renewal or release failed", exc)
                if renewing:
                    renew_at = loop.time() + FAILURE_BACKOFF(failures)
                continue
            failures = 0
            if renewing:
                renew_at = loop.time() + renew_every_s
            if released:
                self._freed.set()  # this process's own slots need no announcement

    async def _listen_loop(self) -> None:
        """Sets ``_freed`` on every announced release; resubscribes after a lost connection
        (the fallback retry covers what was announced meanwhile)."""
        attempt = 0
        channel = self._keys.backend_leases_freed()
        while True:
            pubsub = self._subscriber.pubsub()
            try:
                await pubsub.subscribe(channel)
                async for message in pubsub.listen():
                    attempt = 0
                    if message.get("type") in ("message", "subscribe"):
                        self._freed.set()
            except asyncio.CancelledError:
                await _close_quietly(pubsub)
                raise
            except Exception as exc:
                attempt += 1
                FAILURES.note("backend lease channel lost", exc)
                await _close_quietly(pubsub)
                await asyncio.sleep(FAILURE_BACKOFF(attempt))


async def _close_quietly(pubsub: Any) -> None:
    # closing a broken connection may raise; nothing is left to save
    with contextlib.suppress(Exception):
        await pubsub.aclose()
