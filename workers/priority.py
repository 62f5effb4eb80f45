"""The priority worker: ``python -m workers.priority``.

Drains the high and normal queues, calls the backend and hands each reply back to the
pod that waits for it. Read top to bottom: receive loops → dispatcher → handler →
shutdown.

Strict priority. One receive loop per queue feeds a dispatcher that always starts
buffered high work first. The normal loop fetches only while the high loop is idle
(its last receive came back short) and slots are free, so a long poll on the high
queue never holds normal work back and normal work never crowds out high work.

Receive strategy. A loop starts with a short poll for as many messages as it has free
slots; while polls return messages it keeps draining; once one comes back empty it
long-polls for ONE message, then drains again. That is cheap on SQS (no empty call
is repeated) and never relies on a long poll returning early with fewer messages than
asked for (some emulators hold found messages until the poll is full or times out).
A worker with many slots runs several loops per queue (one per ``RECEIVERS_PER_SLOTS``
slots): one loop's round trips would otherwise cap its intake.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import structlog
import uvloop
from redis.asyncio import Redis

from queuefront import cache, metrics
from queuefront.envelope import Reply, RequestEnvelope, decode_request, encode_reply
from queuefront.keys import Keys
from queuefront.limits import MAX_RECEIVE_MESSAGES
from queuefront.probes import start_probe_server
from queuefront.redis import open_redis
from queuefront.settings import Settings
from queuefront.sqs import Message, QueueOps, open_client
from queuefront.telemetry import configure_logging, get_logger
from workers.backend import Backend

log = get_logger(__name__)

Priority = Literal["high", "normal"]
RECEIVE_ERROR_BACKOFF_S = 1.0
RECEIVERS_PER_SLOTS = 16
MAX_RECEIVERS_PER_QUEUE = 4


@dataclass(eq=False)
class Held:
    """A received message, from the moment it is received until deleted or released."""

    priority: Priority
    queue: QueueOps
    message: Message
    extended_at: float = field(default_factory=time.monotonic)


class PriorityWorker:
    def __init__(
        self,
        settings: Settings,
        queues: dict[Priority, QueueOps],
        redis: Redis,
        backend: Backend,
        visibility_s: dict[Priority, int],
    ) -> None:
        self._settings = settings
        self._queues = queues
        self._redis = redis
        self._backend = backend
        self._visibility_s = visibility_s
        self._keys = Keys(settings.key_prefix)
        self._capacity = settings.worker_concurrency
        self._buffers: dict[Priority, deque[Held]] = {"high": deque(), "normal": deque()}
        self._running: dict[asyncio.Task[None], Held] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._receivers = max(
            1, min(MAX_RECEIVERS_PER_QUEUE, settings.worker_concurrency // RECEIVERS_PER_SLOTS)
        )
        self._high_busy = self._receivers  # high loops whose last receive was not empty
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self.last_receive_ok = time.monotonic()

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

    async def _receive_loop(self, priority: Priority) -> None:
        ops = self._queues[priority]
        long_poll = False
        busy = True  # counted in _high_busy until its first empty receive
        while True:
            await self._until(lambda: self._may_receive(priority) or self._stopping.is_set())
            if self._stopping.is_set():
                return
            want = 1 if long_poll else min(MAX_RECEIVE_MESSAGES, self._free())
            messages = await self._receive(ops, want, long_poll)
            if messages is None:  # stopping, or an error already logged
                continue
            self.last_receive_ok = time.monotonic()
            empty = not messages
            if priority == "high" and busy == empty:
                busy = not empty
                self._high_busy += 1 if busy else -1
            for message in messages:
                self._buffers[priority].append(Held(priority, ops, message))
            if self._stopping.is_set():
                self._release_buffered()
            self._poke()
            long_poll = empty

    async def _receive(self, ops: QueueOps, want: int, long_poll: bool) -> list[Message] | None:
        wait_s = self._settings.receive_wait_s if long_poll else 0
        receive = asyncio.create_task(ops.receive(want, wait_s))
        stop = asyncio.create_task(self._stopping.wait())
        try:
            # a short poll is let finish (its messages are then released); a long poll
            # is abandoned at shutdown rather than held for up to 20 s
            await asyncio.wait(
                {receive, stop} if long_poll else {receive}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop.cancel()
        if not receive.done():
            receive.cancel()
            await asyncio.gather(receive, return_exceptions=True)
            return None
        try:
            return receive.result()
        except Exception as exc:
            log.warning("receive failed", queue=ops.name, error=str(exc))
            await asyncio.sleep(RECEIVE_ERROR_BACKOFF_S)
            return None

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
            self._spawn(self._delete(held))
            return
        reply = await self._backend.call(env)
        try:
            await self._publish(env, reply)
        except Exception as exc:
            # not deleted: redelivered after the visibility timeout if still in its window
            log.warning("reply publish failed", error=str(exc))
            metrics.WORKER_MESSAGES.labels(queue_name, "publish_failed").inc()
            return
        outcome = "ok" if reply.status < 500 else "backend_error"
        metrics.WORKER_MESSAGES.labels(queue_name, outcome).inc()
        log.debug("replied", status=reply.status)
        self._spawn(self._delete(held))

    async def _publish(self, env: RequestEnvelope, reply: Reply) -> None:
        """Store, publish and (2xx of a cached route) cache the reply: one round trip."""
        payload = encode_reply(reply)
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(self._keys.reply(env.id), payload, ex=self._settings.reply_ttl_s)
        pipe.publish(env.reply_to, payload)
        if env.cache is not None and 200 <= reply.status < 300:
            cache.store(pipe, env.cache, reply)
        await pipe.execute()

    async def _delete(self, held: Held) -> None:
        try:
            await held.queue.delete(held.message.receipt_handle)
        except Exception as exc:
            log.warning("delete failed", queue=held.queue.name, error=str(exc))

    async def _release(self, held: Held) -> None:
        """Visibility 0: another worker may take the message at once."""
        metrics.WORKER_MESSAGES.labels(held.queue.name, "released").inc()
        try:
            await held.queue.change_visibility(held.message.receipt_handle, 0)
        except Exception as exc:
            log.warning("release failed", queue=held.queue.name, error=str(exc))

    def _release_buffered(self) -> None:
        for buffer in self._buffers.values():
            while buffer:
                self._spawn(self._release(buffer.popleft()))

    # --- visibility ---------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """Extends the visibility of work that has outlived half its queue's timeout."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            held_all = [*self._running.values(), *self._buffers["high"], *self._buffers["normal"]]
            for held in held_all:
                timeout_s = self._visibility_s[held.priority]
                if now - held.extended_at >= timeout_s / 2:
                    held.extended_at = now
                    metrics.VISIBILITY_EXTENSIONS.inc()
                    self._spawn(
                        held.queue.change_visibility(held.message.receipt_handle, timeout_s)
                    )

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Runs until ``stop()``; then drains: finish or release everything held."""
        receivers = [
            asyncio.create_task(self._receive_loop(p), name=f"receive-{p}-{i}")
            for p in ("high", "normal")
            for i in range(self._receivers)
        ]
        others = [
            asyncio.create_task(self._dispatch_loop(), name="dispatch"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
        ]
        log.info("worker started", concurrency=self._capacity, receivers=self._receivers)
        await self._stopping.wait()
        started = time.monotonic()
        await asyncio.gather(*receivers, return_exceptions=True)
        for task in others[:1]:  # no new work starts from here on
            task.cancel()
        self._release_buffered()
        if self._running:
            _, late = await asyncio.wait(
                set(self._running), timeout=self._settings.shutdown_timeout_s
            )
            for task in late:
                held = self._running.get(task)
                task.cancel()
                if held is not None:
                    self._spawn(self._release(held))
            await asyncio.gather(*late, return_exceptions=True)
        others[1].cancel()
        await asyncio.gather(*others, return_exceptions=True)
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
        visibility = {
            p: int((await q.attributes("VisibilityTimeout")).get("VisibilityTimeout", "30"))
            for p, q in queues.items()
        }
        worker = PriorityWorker(
            settings, queues, redis, Backend(settings.backend_url, http), visibility
        )

        async def ready() -> list[str]:
            down = []
            try:
                await asyncio.wait_for(redis.ping(), 1.0)
            except Exception:
                down.append("redis")
            if time.monotonic() - worker.last_receive_ok > settings.receive_wait_s + 15:
                down.append("sqs")
            return down

        probes = await start_probe_server(settings.metrics_port, ready)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        try:
            await worker.run()
        finally:
            await probes.cleanup()
            await redis.aclose()


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    uvloop.run(main_async(settings))


if __name__ == "__main__":
    main()
