"""The reply path: one Redis subscription per pod and a dict of futures by request id.

Why this shape: a SUBSCRIBE per request costs a connection and two round trips each
and polling costs a round trip per request per tick; one subscription at start-up costs
nothing per request. The worker both stores the reply under ``reply:<id>`` and publishes
it, so when the subscription drops (pub/sub delivers at most once) the pod re-subscribes
and fetches the stored replies of every pending id in one MGET: no reply is lost.

redis-py may reconnect and re-subscribe on its own; either way the server confirms the
subscription with a ``subscribe`` message, and that confirmation is what triggers the
MGET — so every (re)subscription, whoever made it, is followed by a recovery.

The same connection carries the pod's other broadcast channels (the cache's
invalidations and fills): one connection per pod, whatever it listens to. A message
that cannot be decoded is dropped and counted, never allowed to stop the listener; if
the listener stops anyway, ``connected`` turns false and the pod reports itself unready.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from queuefront import metrics, tasks
from queuefront.backoff import Backoff
from queuefront.envelope import Reply, decode_reply
from queuefront.failures import FailureLog
from queuefront.keys import Keys
from queuefront.telemetry import get_logger

log = get_logger(__name__)
FAILURES = FailureLog(log)

RECONNECT_BACKOFF = Backoff(first_s=0.05, cap_s=2.0, jitter="full")
"""Pause before subscribing again after the connection went. Full jitter: when Redis
goes away every pod's listener loses it at once, and they would all reconnect together."""
MGET_CHUNK = 1000
"""Pending ids fetched per MGET after a reconnect (bounded so one call stays small)."""
MGET_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Channel:
    """Another channel on the pod's subscription: what to do with its messages, and
    what to do when (re)subscribed (messages may have been missed before that)."""

    on_message: Callable[[bytes], None]
    on_subscribed: Callable[[], None]


class ReplyWaiter:
    """Matches replies pushed on ``replies:<pod id>`` to the requests waiting for them."""

    def __init__(
        self,
        redis: Redis,
        subscriber: Redis,
        keys: Keys,
        pod_id: str,
        ttl_s: int,
        channels: dict[str, Channel] | None = None,
    ):
        self._redis = redis
        self._subscriber = subscriber  # its own pool: its connection carries a client name
        self._keys = keys
        self.channel = keys.reply_channel(pod_id)
        self._channels = dict(channels or {})
        self._ttl_s = ttl_s
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        # ids that timed out recently, so their replies count as late, not as duplicates
        self._timed_out: OrderedDict[str, float] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._lost_at = time.monotonic()

    @property
    def connected(self) -> bool:
        return self._subscribed.is_set() and not self.listener_dead

    @property
    def listener_dead(self) -> bool:
        """The listening task ended: nothing will ever resolve this pod's futures."""
        return self._task is not None and self._task.done()

    def disconnected_for_s(self) -> float:
        if self._subscribed.is_set():
            return 0.0
        return time.monotonic() - self._lost_at

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def start(self, timeout_s: float = 10.0) -> None:
        self._task = asyncio.create_task(self._run(), name="reply-subscriber")
        self._task.add_done_callback(self._listener_ended)
        await asyncio.wait_for(self._subscribed.wait(), timeout_s)

    def _listener_ended(self, task: asyncio.Task[None]) -> None:
        self._lost()
        if not task.cancelled() and task.exception() is not None:
            log.error("reply listener stopped", exc_info=task.exception())

    async def stop(self) -> None:
        await tasks.stop(self._task)
        for fut in self._pending.values():
            fut.cancel()
        self._pending.clear()

    def _lost(self) -> None:
        if self._subscribed.is_set():
            self._lost_at = time.monotonic()
        self._subscribed.clear()

    def expect(self, request_id: str) -> asyncio.Future[Reply]:
        """Registers interest BEFORE the request is enqueued, so no reply can come first."""
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        metrics.PENDING_REPLIES.set(len(self._pending))
        return fut

    def forget(self, request_id: str, *, timed_out: bool) -> None:
        self._pending.pop(request_id, None)
        metrics.PENDING_REPLIES.set(len(self._pending))
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
            metrics.PENDING_REPLIES.set(len(self._pending))
        elif self._timed_out.pop(reply.id, None) is not None:
            metrics.REPLIES.labels("late").inc()
            FAILURES.note("late reply dropped", request_id=reply.id)
        # else: a duplicate (pushed and also recovered by MGET): already delivered

    def _deliver_raw(self, data: bytes) -> bool:
        """Decodes and delivers one reply; a bad one is dropped and counted."""
        try:
            reply = decode_reply(data)
        except (msgspec.DecodeError, TypeError, ValueError) as exc:
            metrics.REPLIES.labels("undecodable").inc()
            FAILURES.note("undecodable reply dropped", exc)
            return False
        self._deliver(reply)
        return True

    async def _run(self) -> None:
        attempt = 0
        while True:
            pubsub = self._subscriber.pubsub()
            try:
                await pubsub.subscribe(self.channel, *self._channels)
                async for message in pubsub.listen():
                    attempt = 0
                    await self._on_message(message)
            except asyncio.CancelledError:
                await _close_quietly(pubsub)
                raise
            except Exception as exc:
                # RedisError/OSError: the connection went; anything else is a bug, but a
                # pod that stops listening answers every proxied request with a 504
                self._lost()
                attempt += 1
                delay = RECONNECT_BACKOFF(attempt)
                known = isinstance(exc, RedisError | OSError)
                FAILURES.note("reply subscription lost", exc, traceback=not known)
                await _close_quietly(pubsub)
                await asyncio.sleep(delay)

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = _text(message.get("channel", b""))
        if kind == "message":
            if channel == self.channel:
                self._deliver_raw(message["data"])
            elif channel in self._channels:
                try:
                    self._channels[channel].on_message(message["data"])
                except Exception as exc:
                    FAILURES.note("broadcast message dropped", exc, channel=channel)
        elif kind == "subscribe":
            if channel == self.channel:
                metrics.PUBSUB_SUBSCRIBES.inc()
                await self._recover()
                self._subscribed.set()
            elif channel in self._channels:
                self._channels[channel].on_subscribed()

    async def _recover(self) -> None:
        """Fetches replies stored while no subscription was listening."""
        ids = list(self._pending)
        recovered = 0
        for i in range(0, len(ids), MGET_CHUNK):
            chunk = ids[i : i + MGET_CHUNK]
            try:
                values = await asyncio.wait_for(
                    self._redis.mget([self._keys.reply(rid) for rid in chunk]), MGET_TIMEOUT_S
                )
            except (RedisError, OSError, TimeoutError) as exc:
                # the listener reconnects and tries again: a reply stored while it was
                # away must not be left unread because one MGET failed
                raise RedisError(f"reply recovery failed: {exc!r}") from exc
            for value in values:
                if value is not None:
                    raw = value if isinstance(value, bytes) else value.encode()
                    recovered += self._deliver_raw(raw)
        if recovered:
            metrics.REPLIES_RECOVERED.inc(recovered)
        log.info("reply channel subscribed", channel=self.channel, recovered=recovered)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _close_quietly(pubsub: Any) -> None:
    # closing a broken connection may raise; nothing is left to save
    with contextlib.suppress(Exception):
        await pubsub.aclose()
