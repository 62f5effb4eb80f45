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

Prefetch. A slot that frees up would sit idle for a whole receive round trip (10-15 ms
on the emulator, which answers a poll no sooner than its first 10 ms check, and about
as much on SQS) if the next message were fetched only then; with a 20 ms backend that
idles a third of the slots. So the loops keep up to ``PREFETCH_PER_RECEIVER`` messages
per loop (never more than the slots) received ahead, ready for the next free slot.
Measured (wrk -c64, 32 slots, 20 ms backend, 2 cores): 622-705 req/s without prefetch,
963-1,025 with 20-32 ready; messages waited 66 ms in the queue before, 16-26 ms after.
Receives already in flight count against the limit, so several loops never overshoot.
A prefetched message is held like a running one (its visibility is kept, it is
released at shutdown); high work still starts before any buffered normal work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Literal

import aiohttp
import structlog
import uvloop
from redis.exceptions import RedisError

from queuefront import clock, metrics, tasks
from queuefront.consumer import Held, Poller, VisibilityKeeper, serve, visibility_timeouts
from queuefront.drain import DrainReporter
from queuefront.envelope import RequestEnvelope, decode_request
from queuefront.failures import FailureLog
from queuefront.keys import Keys
from queuefront.redis import open_redis
from queuefront.routes import load_routes
from queuefront.settings import Settings
from queuefront.sqs import QueueOps, open_client
from queuefront.telemetry import configure_logging, get_logger
from workers.backend import Backend, error_reply
from workers.handback import Expired, HandBack
from workers.trust import REASONS, MessageCheck, Refused

log = get_logger(__name__)
FAILURES = FailureLog(log)

Priority = Literal["high", "normal"]
RECEIVERS_PER_SLOTS = 16
MAX_RECEIVERS_PER_QUEUE = 4
PREFETCH_PER_RECEIVER = 10
"""Messages received ahead of free slots, per receive loop (one receive's worth)."""
FAILED_RETRY_S = 5
"""Visibility given back to a message whose handling failed unexpectedly: it is retried
soon, and after maxReceiveCount it is in the DLQ for an operator."""
CLAIMED_RECHECK_S = 5
"""When a request is claimed by another worker, its duplicate looks again this much later."""
ANSWER_INSTEAD_S = 2.0
"""How long a 502 sent in place of a reply that could not be handed back may take."""
SHORT_POLLS_GRACE_S = 0.5
"""At shutdown, how long buffered messages wait for the worker's in-flight short polls
(the emulator answers one within 40 ms, SQS at once) before they are released."""
WORKER_OUTCOMES = (
    "ok",
    "backend_error",
    "expired",
    "released",
    "duplicate",
    "in_progress_elsewhere",
    "publish_failed",
    "failed",
    "invalid",
    "undeliverable",
)


class PriorityWorker:
    def __init__(
        self,
        settings: Settings,
        queues: dict[Priority, QueueOps],
        handback: HandBack,
        reporter: DrainReporter,
        backend: Backend,
        keeper: VisibilityKeeper,
        check: MessageCheck,
    ) -> None:
        self._settings = settings
        self._check = check
        self._queues = queues
        self._handback = handback
        self._reporter = reporter
        self._backend = backend
        self._keeper = keeper
        self._capacity = settings.worker_concurrency
        self._buffers: dict[Priority, deque[Held]] = {"high": deque(), "normal": deque()}
        self._running: dict[asyncio.Task[None], Held] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._claimed: dict[Held, RequestEnvelope] = {}
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
        self._prefetch = min(self._capacity, PREFETCH_PER_RECEIVER * self._receivers)
        self._asked = 0  # messages asked for by receives in flight
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()

    @property
    def last_receive_ok(self) -> float:
        return min(p.last_ok for _, p in self._pollers)

    # --- state ------------------------------------------------------------------------

    def _free(self) -> int:
        """Messages the loops may still ask for: slots plus prefetch, less what is held
        (running or buffered) and what receives in flight may bring."""
        buffered = len(self._buffers["high"]) + len(self._buffers["normal"])
        held = len(self._running) + buffered + self._asked
        return self._capacity + self._prefetch - held

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
            want = poller.wants(self._free())
            self._asked += want
            try:
                received = await poller.receive(want)
            finally:
                self._asked -= want
            if received is None:  # an error, already logged
                continue
            empty = not received
            if priority == "high" and busy == empty:
                busy = not empty
                self._high_busy += 1 if busy else -1
            self._keeper.track(*received)
            self._buffers[priority].extend(received)
            # when stopping, run() releases what is buffered once this loop has returned
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
        """Whatever happens, the message ends deleted (after its reply), released, or
        left to reach its DLQ — never held without an owner."""
        queue_name = held.queue.name
        try:
            env = self._check.check(decode_request(held.message.body))
        except Exception as exc:
            # never executed; left undeleted: after maxReceiveCount receives SQS moves it
            # to the DLQ, where an operator finds it
            self._keeper.untrack(held)
            reason = exc.reason if isinstance(exc, Refused) else "undecodable"
            FAILURES.note(f"message refused ({reason})", exc, message_id=held.message.message_id)
            metrics.WORKER_MESSAGES.labels(queue_name, "invalid").inc()
            metrics.REFUSED_MESSAGES.labels(queue_name, reason).inc()
            return
        structlog.contextvars.bind_contextvars(request_id=env.id, route=env.route)
        try:
            await self._process(held, env)
        except asyncio.CancelledError:
            raise  # shutdown: run() releases what it cancels
        except Exception as exc:
            # decided on whether the backend call *started*, never on what it returned:
            # once it has, the backend may have acted, and a second call may act twice
            if held.backend_started:
                await self._answer_instead(held, env, exc)
                return
            FAILURES.note("message handling failed", exc, traceback=True)
            metrics.WORKER_MESSAGES.labels(queue_name, "failed").inc()
            if self._claimed.pop(held, None) is not None:
                await self._handback.unclaim(env)  # ours only: never another worker's
            self._keeper.untrack(held)
            # visible again soon: retried, and after maxReceiveCount in the DLQ
            self._spawn(held.release(FAILED_RETRY_S))

    async def _answer_instead(self, held: Held, env: RequestEnvelope, exc: Exception) -> None:
        """After the backend call, a reply that cannot be handed back as it is (it cannot
        be encoded, Redis refuses to store it): the client gets a 502 naming the problem
        at once, instead of a 504 at its deadline, and the message is deleted — a second
        delivery could only call the backend again."""
        FAILURES.note("reply not handed back, 502 sent instead", exc, traceback=True)
        metrics.WORKER_MESSAGES.labels(held.queue.name, "undeliverable").inc()
        problem = "Redis refused it" if isinstance(exc, RedisError) else type(exc).__name__
        reply = error_reply(
            env.id,
            502,
            "bad_gateway",
            f"the backend answered, but its answer could not be passed on ({problem})",
        )
        try:
            async with asyncio.timeout(max(0.05, min(ANSWER_INSTEAD_S, env.seconds_left()))):
                # hand_back, not publish: a cached route's waiting pods are released too
                await self._handback.hand_back(env, reply)
        except Exception as again:  # Redis away or refusing: nothing more can reach the pod
            FAILURES.note("502 instead of the reply not delivered either", again)
        self._done(held)

    async def _process(self, held: Held, env: RequestEnvelope) -> None:
        """Handles one decoded message. ``held.backend_started`` is set before the call."""
        queue_name = held.queue.name
        metrics.MESSAGE_AGE.labels(queue_name).observe(max(0.0, clock.now() - env.enqueued_at))
        if env.seconds_left() <= 0:
            # the client already has its 504: calling the backend would only add load
            self._expired(held, env)
            return
        try:
            claim = await self._handback.claim(env)
        except Expired:
            self._expired(held, env)
            return
        if claim.outcome == "replied":
            # settled already (a duplicate delivery, or the api's tombstone): no second
            # backend call; publishing again costs nothing and may still reach its pod
            assert claim.stored is not None
            metrics.WORKER_MESSAGES.labels(queue_name, "duplicate").inc()
            with contextlib.suppress(Expired, RedisError):  # Redis away, or refusing
                await self._handback.publish(env, claim.stored)
            self._done(held)
            return
        if claim.outcome == "elsewhere":
            # another worker calls (or called) the backend for it: look again later;
            # after the deadline the copy is dropped as expired
            metrics.WORKER_MESSAGES.labels(queue_name, "in_progress_elsewhere").inc()
            self._keeper.untrack(held)
            self._spawn(held.release(min(CLAIMED_RECHECK_S, max(1, int(env.seconds_left())))))
            return
        self._claimed[held] = env
        held.backend_started = True
        started = time.monotonic()
        reply = await self._backend.call(env)
        try:
            await self._handback.hand_back(env, reply)
        except Expired:
            # the deadline passed with Redis unavailable: nobody waits for it any more
            self._keeper.untrack(held)
            metrics.WORKER_MESSAGES.labels(queue_name, "publish_failed").inc()
            self._done(held)
            return
        self._reporter.record(time.monotonic() - started)
        outcome = "ok" if reply.status < 500 else "backend_error"
        metrics.WORKER_MESSAGES.labels(queue_name, outcome).inc()
        log.debug("replied", status=reply.status)
        self._done(held)

    def _expired(self, held: Held, env: RequestEnvelope) -> None:
        metrics.EXPIRED_MESSAGES.labels(held.queue.name).inc()
        metrics.WORKER_MESSAGES.labels(held.queue.name, "expired").inc()
        # counted in queuefront_expired_messages_total; logged once per interval
        FAILURES.note("expired message dropped", late_by_s=round(-env.seconds_left(), 3))
        self._done(held)

    def _done(self, held: Held) -> None:
        """Deleted in the background: the slot is free as soon as the reply is out."""
        self._claimed.pop(held, None)
        self._keeper.untrack(held)
        self._spawn(held.delete())

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
        dispatcher.cancel()  # no new work starts from here on
        # what waits in the buffers goes back soon, not after a receiver's long poll — but
        # after this worker's own short polls have returned: a message released while one
        # of its loops is still polling can be taken by that poll and released again, and
        # each receive-and-release adds two to the emulator's receive count (SQS: one), so
        # two rounds sent requests to the DLQ unanswered (seen in the compose restart test)
        await asyncio.wait(receivers, timeout=SHORT_POLLS_GRACE_S)
        self._release_buffered()
        await asyncio.gather(*receivers, return_exceptions=True)
        self._release_buffered()
        if self._running:
            _, late = await asyncio.wait(
                set(self._running), timeout=self._settings.shutdown_timeout_s
            )
            cut_short = [self._running[t] for t in late if t in self._running]
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            for held in cut_short:
                env = self._claimed.pop(held, None)
                if env is not None and not held.backend_started:
                    await self._handback.unclaim(env)  # another worker may take it at once
                # a call cut short may or may not have reached the backend: its claim
                # stays, so no second call is made for it
                self._release(held)
        keeper.cancel()
        await asyncio.gather(dispatcher, keeper, return_exceptions=True)
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        for ops in self._queues.values():
            await ops.close()
        await self._handback.close()
        log.info("worker stopped", drain_s=round(time.monotonic() - started, 3))


async def main_async(settings: Settings) -> None:
    redis = open_redis(settings)
    keys = Keys(settings.key_prefix)
    worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
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
        metrics.prime_consumer([q.name for q in queues.values()], WORKER_OUTCOMES)
        metrics.prime_refusals([q.name for q in queues.values()], REASONS)
        keeper = VisibilityKeeper(await visibility_timeouts(*queues.values()))
        dlqs = [await QueueOps.open(client, settings.dlq_name(q.name), 0) for q in queues.values()]
        backend = Backend(settings.backend_url, http, settings.max_reply_bytes)
        handback = HandBack(redis, keys, worker_id, settings.reply_ttl_s)
        reporter = DrainReporter(redis, keys, worker_id, settings.worker_concurrency)
        check = MessageCheck(load_routes(settings.routes_file), keys)
        worker = PriorityWorker(settings, queues, handback, reporter, backend, keeper, check)
        reporting = asyncio.create_task(reporter.run(), name="drain-report")
        try:
            await serve(worker, settings=settings, redis=redis, dlqs=dlqs)
        finally:
            await tasks.stop(reporting)
            await redis.aclose()


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    uvloop.run(main_async(settings))


if __name__ == "__main__":
    main()
