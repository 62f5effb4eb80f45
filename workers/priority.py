"""The priority worker: ``python -m workers.priority``.

Drains the high and normal queues, calls the backend and hands each reply back to the
pod that waits for it. Read top to bottom: receive loops → dispatcher → handler →
shutdown.

Strict priority. One receive loop per queue feeds a dispatcher that always starts
buffered high work first. The normal loop fetches only while the high loop is idle
(its last receive came back short) and slots are free, so a long poll on the high
queue never holds normal work back and normal work never crowds out high work.

Receiving follows ``queuefront.consumer.Poller`` (drain with short polls, long-poll for
one message when empty). A worker with many slots runs several loops per queue (one
per ``RECEIVERS_PER_SLOTS`` slots): one loop's round trips would otherwise cap intake.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Literal

import aiohttp
import structlog
import uvloop
from redis.asyncio import Redis

from queuefront import cache, metrics
from queuefront.consumer import Held, Poller, VisibilityKeeper, serve, visibility_timeouts
from queuefront.envelope import Reply, RequestEnvelope, decode_request, encode_reply
from queuefront.keys import Keys
from queuefront.redis import open_redis
from queuefront.settings import Settings
from queuefront.sqs import QueueOps, open_client
from queuefront.telemetry import configure_logging, get_logger
from workers.backend import Backend

log = get_logger(__name__)

Priority = Literal["high", "normal"]
RECEIVERS_PER_SLOTS = 32
MAX_RECEIVERS_PER_QUEUE = 4


class PriorityWorker:
    def __init__(
        self,
        settings: Settings,
        queues: dict[Priority, QueueOps],
        redis: Redis,
        backend: Backend,
        keeper: VisibilityKeeper,
    ) -> None:
        self._settings = settings
        self._queues = queues
        self._redis = redis
        self._backend = backend
        self._keeper = keeper
        self._keys = Keys(settings.key_prefix)
        self._capacity = settings.worker_concurrency
        self._buffers: dict[Priority, deque[Held]] = {"high": deque(), "normal": deque()}
        self._running: dict[asyncio.Task[None], Held] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._receivers = max(
            1, min(MAX_RECEIVERS_PER_QUEUE, settings.worker_concurrency // RECEIVERS_PER_SLOTS)
        )
        priorities: tuple[Priority, ...] = ("high", "normal")
        self._pollers = [
            (p, Poller(queues[p], settings.receive_wait_s))
            for p in priorities
            for _ in range(self._receivers)
        ]
        self._high_busy = self._receivers  # high loops whose last receive was not empty
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()

    @property
    def last_receive_ok(self) -> float:
        return min(p.last_ok for _, p in self._pollers)

    # --- state ------------------------------------------------------------------------

    def _free(self) -> int:
        buffered = len(self._buffers["high"]) + len(self._buffers["normal"])
        return self._capacity - len(self._running) - buffered

    def _may_receive(self, priority: Priority) -> bool:
        if self._stopping.is_set() or self._free() <= 0:
            return False
        return priority == "high" or (self._high_busy == 0 and not self._buffers["high"])

    def _poke(self) -> None:
        self._changed.set()

    async def _until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def stop(self) -> None:
        self._stopping.set()
        self._poke()

    # --- receive ----------------------------------------------------------------------

    async def _receive_loop(self, priority: Priority, poller: Poller) -> None:
        busy = True  # counted in _high_busy until its first empty receive
        while True:
            await self._until(lambda: self._may_receive(priority) or self._stopping.is_set())
            if self._stopping.is_set():
                return
            received = await poller.receive(self._free())
            if received is None:  # an error, already logged
                continue
            empty = not received
            if priority == "high" and busy == empty:
                busy = not empty
                self._high_busy += 1 if busy else -1
            self._keeper.track(*received)
            self._buffers[priority].extend(received)
            if self._stopping.is_set():
                self._release_buffered()
            self._poke()

    # --- dispatch -----------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        def ready() -> bool:
            has_work = bool(self._buffers["high"] or self._buffers["normal"])
            return has_work and len(self._running) < self._capacity

        while True:
            await self._until(ready)
            buffer = self._buffers["high"] or self._buffers["normal"]
            held = buffer.popleft()
            task = asyncio.create_task(self._handle(held))
            self._running[task] = held
            metrics.WORKER_BUSY.set(len(self._running))
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        metrics.WORKER_BUSY.set(len(self._running))
        self._poke()

    # --- handle -------------------------------------------------------------------------

    async def _handle(self, held: Held) -> None:
        queue_name = held.queue.name
        try:
            env = decode_request(held.message.body)
        except Exception as exc:
            # left undeleted: after maxReceiveCount receives SQS moves it to the DLQ
            self._keeper.untrack(held)
            log.error("invalid message", message_id=held.message.message_id, error=str(exc))
            metrics.WORKER_MESSAGES.labels(queue_name, "invalid").inc()
            return
        structlog.contextvars.bind_contextvars(request_id=env.id, route=env.route)
        metrics.MESSAGE_AGE.labels(queue_name).observe(max(0.0, time.time() - env.enqueued_at))
        if env.seconds_left() <= 0:
            # the client already has its 504: calling the backend would only add load
            metrics.EXPIRED_MESSAGES.labels(queue_name).inc()
            metrics.WORKER_MESSAGES.labels(queue_name, "expired").inc()
            log.info("expired message dropped", late_by_s=round(-env.seconds_left(), 3))
            self._done(held)
            return
        reply = await self._backend.call(env)
        try:
            await self._publish(env, reply)
        except Exception as exc:
            # not deleted: redelivered after the visibility timeout if still in its window
            self._keeper.untrack(held)
            log.warning("reply publish failed", error=str(exc))
            metrics.WORKER_MESSAGES.labels(queue_name, "publish_failed").inc()
            return
        outcome = "ok" if reply.status < 500 else "backend_error"
        metrics.WORKER_MESSAGES.labels(queue_name, outcome).inc()
        log.debug("replied", status=reply.status)
        self._done(held)

    def _done(self, held: Held) -> None:
        """Deleted in the background: the slot is free as soon as the reply is out."""
        self._keeper.untrack(held)
        self._spawn(held.delete())

    async def _publish(self, env: RequestEnvelope, reply: Reply) -> None:
        """Store, publish and (2xx of a cached route) cache the reply: one round trip."""
        payload = encode_reply(reply)
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(self._keys.reply(env.id), payload, ex=self._settings.reply_ttl_s)
        pipe.publish(env.reply_to, payload)
        if env.cache is not None and 200 <= reply.status < 300:
            cache.store(pipe, env.cache, reply)
        await pipe.execute()

    def _release(self, held: Held) -> None:
        self._keeper.untrack(held)
        self._spawn(held.release())

    def _release_buffered(self) -> None:
        for buffer in self._buffers.values():
            while buffer:
                self._release(buffer.popleft())

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Runs until ``stop()``; then drains: finish or release everything held."""
        receivers = [
            asyncio.create_task(self._receive_loop(p, poller), name=f"receive-{p}")
            for p, poller in self._pollers
        ]
        dispatcher = asyncio.create_task(self._dispatch_loop(), name="dispatch")
        keeper = asyncio.create_task(self._keeper.run(), name="visibility")
        log.info("worker started", concurrency=self._capacity, receivers=self._receivers)
        await self._stopping.wait()
        started = time.monotonic()
        await asyncio.gather(*receivers, return_exceptions=True)
        dispatcher.cancel()  # no new work starts from here on
        self._release_buffered()
        if self._running:
            _, late = await asyncio.wait(
                set(self._running), timeout=self._settings.shutdown_timeout_s
            )
            for task in late:
                held = self._running.get(task)
                task.cancel()
                if held is not None:
                    self._release(held)
            await asyncio.gather(*late, return_exceptions=True)
        keeper.cancel()
        await asyncio.gather(dispatcher, keeper, return_exceptions=True)
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        for ops in self._queues.values():
            await ops.close()
        log.info("worker stopped", drain_s=round(time.monotonic() - started, 3))


async def main_async(settings: Settings) -> None:
    redis = open_redis(settings)
    linger_s = settings.send_linger_ms / 1000
    connector = aiohttp.TCPConnector(limit=settings.worker_concurrency, ttl_dns_cache=60)
    async with (
        open_client(settings, pool=settings.worker_concurrency + 10) as client,
        aiohttp.ClientSession(connector=connector, auto_decompress=True) as http,
    ):
        queues: dict[Priority, QueueOps] = {
            "high": await QueueOps.open(client, settings.queue_high, linger_s),
            "normal": await QueueOps.open(client, settings.queue_normal, linger_s),
        }
        metrics.prime_consumer(
            [q.name for q in queues.values()], ("ok", "backend_error", "expired", "released")
        )
        keeper = VisibilityKeeper(await visibility_timeouts(*queues.values()))
        dlqs = [await QueueOps.open(client, settings.dlq_name(q.name), 0) for q in queues.values()]
        backend = Backend(settings.backend_url, http)
        worker = PriorityWorker(settings, queues, redis, backend, keeper)
        try:
            await serve(worker, settings=settings, redis=redis, dlqs=dlqs)
        finally:
            await redis.aclose()


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    uvloop.run(main_async(settings))


if __name__ == "__main__":
    main()
