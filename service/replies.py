"""The reply path: one Redis subscription per pod and a dict of futures by request id.

Why this shape: a SUBSCRIBE per request costs a connection and two round trips each
and polling costs a round trip per request per tick; one subscription at start-up costs
nothing per request. The worker both stores the reply under ``reply:<id>`` and publishes
it, so when the subscription drops (pub/sub delivers at most once) the pod re-subscribes
and fetches the stored replies of every pending id in one MGET: no reply is lost.

redis-py may reconnect and re-subscribe on its own; either way the server confirms the
subscription with a ``subscribe`` message, and that confirmation is what triggers the
MGET — so every (re)subscription, whoever made it, is followed by a recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from queuefront import metrics
from queuefront.envelope import Reply, decode_reply
from queuefront.keys import Keys
from queuefront.telemetry import get_logger

log = get_logger(__name__)

RECONNECT_BACKOFF_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
MGET_CHUNK = 1000
"""Pending ids fetched per MGET after a reconnect (bounded so one call stays small)."""


class ReplyWaiter:
    """Matches replies pushed on ``replies:<pod id>`` to the requests waiting for them."""

    def __init__(self, redis: Redis, subscriber: Redis, keys: Keys, pod_id: str, ttl_s: int):
        self._redis = redis
        self._subscriber = subscriber  # its own pool: its connection carries a client name
        self._keys = keys
        self.channel = keys.reply_channel(pod_id)
        self._ttl_s = ttl_s
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        # ids that timed out recently, so their replies count as late, not as duplicates
        self._timed_out: OrderedDict[str, float] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._subscribed.is_set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def start(self, timeout_s: float = 10.0) -> None:
        self._task = asyncio.create_task(self._run(), name="reply-subscriber")
        await asyncio.wait_for(self._subscribed.wait(), timeout_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for fut in self._pending.values():
            fut.cancel()
        self._pending.clear()

    def expect(self, request_id: str) -> asyncio.Future[Reply]:
        """Registers interest BEFORE the request is enqueued, so no reply can come first."""
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        return fut

    def forget(self, request_id: str, *, timed_out: bool) -> None:
        self._pending.pop(request_id, None)
        if timed_out:
            now = time.monotonic()
            self._timed_out[request_id] = now
            while self._timed_out and next(iter(self._timed_out.values())) < now - self._ttl_s:
                self._timed_out.popitem(last=False)

    def _deliver(self, reply: Reply) -> None:
        fut = self._pending.pop(reply.id, None)
        if fut is not None and not fut.done():
            fut.set_result(reply)
            metrics.REPLIES.labels("ok").inc()
        elif self._timed_out.pop(reply.id, None) is not None:
            metrics.REPLIES.labels("late").inc()
            log.info("late reply dropped", request_id=reply.id)
        # else: a duplicate (pushed and also recovered by MGET): already delivered

    async def _run(self) -> None:
        attempt = 0
        while True:
            pubsub = self._subscriber.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                async for message in pubsub.listen():
                    attempt = 0
                    await self._on_message(message)
            except asyncio.CancelledError:
                await _close_quietly(pubsub)
                raise
            except (RedisError, OSError) as exc:
                self._subscribed.clear()
                delay = RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)]
                attempt += 1
                log.warning("reply subscription lost", error=str(exc), retry_in_s=delay)
                await _close_quietly(pubsub)
                await asyncio.sleep(delay)

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "message":
            try:
                self._deliver(decode_reply(message["data"]))
            except Exception:
                log.exception("undecodable reply dropped")
        elif kind == "subscribe":
            metrics.PUBSUB_RESUBSCRIBES.inc()
            self._subscribed.set()
            await self._recover()

    async def _recover(self) -> None:
        """Fetches replies stored while no subscription was listening."""
        ids = list(self._pending)
        recovered = 0
        for i in range(0, len(ids), MGET_CHUNK):
            chunk = ids[i : i + MGET_CHUNK]
            try:
                values = await self._redis.mget([self._keys.reply(rid) for rid in chunk])
            except RedisError as exc:
                log.warning("reply recovery failed", error=str(exc))
                return
            for value in values:
                if value is not None:
                    recovered += 1
                    self._deliver(
                        decode_reply(value if isinstance(value, bytes) else value.encode())
                    )
        if recovered:
            metrics.REPLIES_RECOVERED.inc(recovered)
        log.info("reply channel subscribed", channel=self.channel, recovered=recovered)


async def _close_quietly(pubsub: Any) -> None:
    # closing a broken connection may raise; nothing is left to save
    with contextlib.suppress(Exception):
        await pubsub.aclose()
