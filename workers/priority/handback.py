"""The worker's side of Redis: one backend call per request, and every reply delivered.

Claim. Before calling the backend for a request, the worker sets ``claim:<id>`` (NX,
until the request's deadline) and reads ``reply:<id>`` in the same round trip. A request
that already has a reply (a duplicate SQS delivery, or the api gave up on its send and
left a tombstone) is settled: the stored reply is published again and the message
deleted. A request claimed by someone else is in progress elsewhere (or died with its
worker, mid-call): the backend is not called a second time, the message comes back
later and is dropped once its deadline passes.

Hand back. A computed reply is kept until it is stored and published: if Redis is down
for a moment, the worker retries with back-off until the request's deadline, so a
Redis restart of a few seconds loses no answer. The api recovers replies stored while
its subscription was down with one MGET. Only Redis being *away* (unreachable, slow,
loading, mid-failover) is waited out: an error Redis answers for this very command
(out of memory, no permission) will not pass before the deadline, so it is raised at
once and the worker answers the client another way (``workers.priority.handle``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import msgspec
from redis.asyncio import Redis
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from queuefront.backoff import Backoff
from queuefront.batcher import Batcher
from queuefront.cache import CacheStore, cacheable
from queuefront.envelope import Reply, RequestEnvelope, encode_reply
from queuefront.failures import FailureLog
from queuefront.keys import Keys
from queuefront.telemetry import get_logger

log = get_logger(__name__)
FAILURES = FailureLog(log)

RETRY_BACKOFF = Backoff(first_s=0.05, cap_s=1.0, jitter="full")
"""Pause before a Redis call is tried again. Full jitter: when Redis goes away every
worker's calls fail together, and they would all come back together."""
CALL_TIMEOUT_S = 2.0
"""One Redis round trip; a longer silence counts as a failure and is retried."""
CLAIM_GRACE_S = 60
"""A claim outlives the request's deadline by this much (late duplicates stay settled)."""
KEEP_REPLY_MAX_S = 7 * 86_400
"""Longest a reply is kept for a keyed request (its envelope's ``keep_s``, capped: the
envelope comes from a queue, and a reply held for ever would be memory held for ever)."""
CACHE_STORE_TIMEOUT_S = 1.0
PIPELINE_ENTRIES = 64
"""Claims (or replies) sent in one pipeline at most."""

T = TypeVar("T")


_AWAY = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    TimeoutError,
    BusyLoadingError,
    ReadOnlyError,
    MasterDownError,
    TryAgainError,
    ClusterDownError,
)
"""Redis unreachable, slow, loading its data or failing over: it passes with time."""


_AWAY_REPLIES = ("BUSY", "LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")
"""Error replies of a Redis that is busy (a long script) or changing roles, whatever
exception class the client maps them to."""


def redis_away(exc: BaseException) -> bool:
    """True when ``exc`` says Redis is away for now, not that it refused the command."""
    return isinstance(exc, _AWAY) or (
        isinstance(exc, ResponseError) and str(exc).startswith(_AWAY_REPLIES)
    )


class Expired(Exception):
    """The request's deadline passed before Redis answered."""


@dataclass(frozen=True)
class Claim:
    outcome: Literal["mine", "replied", "elsewhere"]
    stored: bytes | None = None
    """The stored reply, when ``replied``."""


class HandBack:
    def __init__(self, redis: Redis, keys: Keys, worker_id: str, reply_ttl_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._worker_id = worker_id
        self._reply_ttl_s = reply_ttl_s
        self._cache = CacheStore(redis, keys)
        # linger 0: whatever is submitted in one turn of the event loop (the messages of
        # one receive are dispatched together) shares one pipeline
        self._claims: Batcher[tuple[str, int], Claim] = Batcher(
            self._claim_batch, linger_s=0, max_entries=PIPELINE_ENTRIES
        )
        self._replies: Batcher[tuple[str, str, bytes, int], None] = Batcher(
            self._reply_batch, linger_s=0, max_entries=PIPELINE_ENTRIES
        )

    async def claim(self, env: RequestEnvelope) -> Claim:
        """Claims the request for this worker, or says why not (retried until expiry)."""
        # a keyed request's claim lives as long as its key: a retry after the api's 504
        # must not call the backend again while the first call may have done the work
        ttl_s = max(1, int(env.seconds_left()) + CLAIM_GRACE_S, min(env.keep_s, KEEP_REPLY_MAX_S))
        return await self._until_deadline(
            env, "claim", lambda: self._claims.submit((env.id, ttl_s))
        )

    async def _claim_batch(self, items: Sequence[tuple[str, int]]) -> list[Claim | BaseException]:
        """The claims of messages handled at the same moment: one round trip for all."""
        pipe = self._redis.pipeline(transaction=False)
        for request_id, ttl_s in items:
            # the claim BEFORE the read of the reply: the api's tombstone (one script that
            # checks the claim, service.tombstone) then never lands under a running call
            pipe.set(self._keys.claim(request_id), self._worker_id, nx=True, ex=ttl_s)
            pipe.get(self._keys.reply(request_id))
        results = await pipe.execute(raise_on_error=False)
        outcomes: list[Claim | BaseException] = []
        for won, stored in zip(results[::2], results[1::2], strict=True):
            if isinstance(won, BaseException) or isinstance(stored, BaseException):
                outcomes.append(won if isinstance(won, BaseException) else stored)
            elif stored is not None:
                raw = stored if isinstance(stored, bytes) else str(stored).encode()
                outcomes.append(Claim("replied", raw))
            else:
                outcomes.append(Claim("mine" if won else "elsewhere"))
        return outcomes

    async def unclaim(self, env: RequestEnvelope) -> None:
        """Gives a request back before its backend call began (another worker takes it)."""
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await self._redis.delete(self._keys.claim(env.id))
        except (RedisError, OSError, TimeoutError) as exc:
            FAILURES.note("unclaim failed", exc)

    async def hand_back(self, env: RequestEnvelope, reply: Reply) -> Reply:
        """Caches (when allowed), stores and publishes ``reply``; retried until the
        request's deadline. Returns the reply as published (``cached`` set)."""
        if env.cache is not None:
            reply = await self._cache_reply(env, reply)
        payload = encode_reply(reply)
        await self.publish(env, payload)
        return reply

    async def publish(self, env: RequestEnvelope, payload: bytes) -> None:
        """Stores and publishes ``payload``; waits out Redis being away until the deadline
        (``Expired``), raises whatever else Redis answers (a refusal) at once."""
        # a keyed request's reply lives as long as its key: a retry after the api's 504
        # finds it, however late, instead of running the request again
        ttl_s = max(self._reply_ttl_s, min(env.keep_s, KEEP_REPLY_MAX_S))
        await self._until_deadline(
            env,
            "reply store",
            lambda: self._replies.submit((env.id, env.reply_to, payload, ttl_s)),
            refusals_pass=False,
        )

    async def _reply_batch(
        self, items: Sequence[tuple[str, str, bytes, int]]
    ) -> list[BaseException | None]:
        """Replies finished at the same moment: stored and published in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for request_id, channel, payload, ttl_s in items:
            pipe.set(self._keys.reply(request_id), payload, ex=ttl_s)
            pipe.publish(channel, payload)
        results = await pipe.execute(raise_on_error=False)
        outcomes: list[BaseException | None] = []
        for stored, published in zip(results[::2], results[1::2], strict=True):
            failed = [r for r in (stored, published) if isinstance(r, BaseException)]
            outcomes.append(failed[0] if failed else None)
        return outcomes

    async def close(self) -> None:
        await self._claims.close()
        await self._replies.close()

    async def _cache_reply(self, env: RequestEnvelope, reply: Reply) -> Reply:
        """Best effort: a reply that cannot be cached is still delivered."""
        spec = env.cache
        assert spec is not None
        try:
            async with asyncio.timeout(CACHE_STORE_TIMEOUT_S):
                if cacheable(reply, frozenset(spec.forwarded)):
                    if await self._cache.store(spec, reply):
                        return msgspec.structs.replace(reply, cached=True)
                else:
                    await self._cache.not_stored(spec)
        except (RedisError, OSError, TimeoutError) as exc:
            FAILURES.note("cache store failed", exc)
        return reply

    async def _until_deadline(
        self,
        env: RequestEnvelope,
        what: str,
        attempt: Callable[[], Awaitable[T]],
        *,
        refusals_pass: bool = True,
    ) -> T:
        """``attempt`` retried until the deadline. ``refusals_pass``: an error Redis
        answers (out of memory, say) is retried too — a claim may wait for memory to
        free; a computed reply may not (it would hold its slot to the deadline)."""
        tries = 0
        while True:
            try:
                async with asyncio.timeout(min(CALL_TIMEOUT_S, max(0.05, env.seconds_left()))):
                    return await attempt()
            except (RedisError, OSError, TimeoutError) as exc:
                if not refusals_pass and not redis_away(exc):
                    raise
                FAILURES.note(f"redis {what} failed, retrying", exc)
            tries += 1
            delay = RETRY_BACKOFF(tries)
            if env.seconds_left() <= delay:
                raise Expired(f"{what}: the deadline passed while Redis was unavailable")
            await asyncio.sleep(delay)
