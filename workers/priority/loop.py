"""The priority worker's loop: receive loops → dispatcher → a slot per message (``handle``),
until stopped; then the drain. Priority and prefetch: the package's docstring."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from queuefront import metrics, tasks
from queuefront.consumer import Held, Poller, VisibilityKeeper
from queuefront.drain import DrainReporter
from queuefront.settings import Settings
from queuefront.sqs import QueueOps
from queuefront.telemetry import get_logger
from workers.priority.backend import Backend
from workers.priority.handback import HandBack
from workers.priority.handle import Handler
from workers.priority.leases import BackendLeases
from workers.priority.pace import RoutePaces
from workers.priority.trust import MessageCheck

log = get_logger(__name__)

Priority = Literal["high", "normal"]
RECEIVERS_PER_SLOTS = 16
MAX_RECEIVERS_PER_QUEUE = 4
PREFETCH_PER_RECEIVER = 10
"""Messages received ahead of free slots, per receive loop (one receive's worth)."""


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
        leases: BackendLeases | None = None,
    ) -> None:
        self._settings = settings
        self._queues = queues
        self._handback = handback
        self._keeper = keeper
        self._capacity = settings.worker_concurrency
        self._buffers: dict[Priority, deque[Held]] = {"high": deque(), "normal": deque()}
        self._running: dict[asyncio.Task[None], Held] = {}
        self._background = tasks.TaskSet("worker")
        pace = RoutePaces() if settings.worker_refuse_late else None
        self._leases = leases
        """The shared backend limit (``QF_BACKEND_MAX_CONCURRENCY``); None: off."""
        self._handler = Handler(
            check, handback, backend, reporter, keeper, self._spawn, pace, leases
        )
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
        self._background.spawn(coro)

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
            task = asyncio.create_task(self._handler.handle(held))
            self._running[task] = held
            metrics.WORKER_BUSY.set(len(self._running))
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        metrics.WORKER_BUSY.set(len(self._running))
        self._poke()

    def _release(self, held: Held) -> None:
        self._keeper.untrack(held)
        self._spawn(held.release())

    def _idle(self) -> bool:
        return not (self._running or self._buffers["high"] or self._buffers["normal"])

    def _release_buffered(self) -> None:
        for buffer in self._buffers.values():
            while buffer:
                self._release(buffer.popleft())

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Runs until ``stop()``; then drains: finishes everything it holds, and gives
        back only what cannot start before ``QF_SHUTDOWN_TIMEOUT_S``."""
        loops = tasks.TaskSet("worker")
        receivers = [
            loops.spawn(self._receive_loop(p, poller), name=f"receive-{p}")
            for p, poller in self._pollers
        ]
        dispatcher = loops.spawn(self._dispatch_loop(), name="dispatch")
        loops.spawn(self._keeper.run(), name="visibility")  # stopped last, with ``loops``
        if self._leases is not None:  # stopped with ``loops``, once no call runs
            for coro, name in self._leases.loops():
                loops.spawn(coro, name=name)
        log.info(
            "worker started",
            concurrency=self._capacity,
            receivers=self._receivers,
            backend_max_concurrency=self._leases.limit if self._leases else 0,
        )
        await self._stopping.wait()
        started = time.monotonic()
        # No receive starts from here on. What the worker holds (running, taken ahead, or
        # brought by a poll still out) it handles itself, in its slots, until the drain's
        # deadline; only what cannot start by then goes back to the queue. Given back at
        # once instead, a message was taken again by this worker's own poll still out (a
        # long poll waits up to QF_RECEIVE_WAIT_S) and given back a second time: on the
        # emulator a receive and a release each add one to the receive count (on SQS a
        # receive does), so a restart sent requests to the DLQ unanswered.
        deadline = started + self._settings.shutdown_timeout_s
        await asyncio.gather(*receivers, return_exceptions=True)  # polls are never abandoned
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self._until(self._idle)
        await tasks.stop(dispatcher)  # no new work starts from here on
        self._release_buffered()
        if self._running:
            late = set(self._running)
            cut_short = list(self._running.values())
            await asyncio.gather(*(tasks.stop(task) for task in late))
            for held in cut_short:
                env = self._handler.claimed.pop(held, None)
                if env is not None and not held.backend_started:
                    await self._handback.unclaim(env)  # another worker may take it at once
                # a call cut short may or may not have reached the backend: its claim
                # stays, so no second call is made for it
                self._release(held)
        await loops.stop()  # the visibility keeper (and the lease loops): the last running
        if self._leases is not None:
            await self._leases.close()
        await self._background.wait()
        for ops in self._queues.values():
            await ops.close()
        await self._handback.close()
        log.info("worker stopped", drain_s=round(time.monotonic() - started, 3))
