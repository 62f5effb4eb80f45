"""What every queue consumer shares: the receive strategy and visibility upkeep.

Receive strategy (``Poller``): short polls while they return messages; a long poll for
ONE message once a poll comes back empty, then short polls again. No empty call is
repeated (cheap on SQS), and nothing relies on a long poll returning early with fewer
messages than asked for (some emulators hold found messages until the poll is full).

Visibility (``VisibilityKeeper``): a message held for more than half its queue's
visibility timeout gets the full timeout again, so slow work is never redelivered to
another consumer while it is still in progress.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import Gauge
from redis.asyncio import Redis

from queuefront import clock, heap, metrics, tasks
from queuefront.backoff import Backoff
from queuefront.failures import FailureLog
from queuefront.limits import MAX_RECEIVE_MESSAGES
from queuefront.probes import start_probe_server
from queuefront.redis import redis_down
from queuefront.settings import Settings
from queuefront.sqs import Message, QueueOps
from queuefront.telemetry import get_logger

log = get_logger(__name__)
FAILURES = FailureLog(log)

RECEIVE_ERROR_BACKOFF_S = 1.0
"""Pause after a failed receive; doubled for each further failure in a row."""
RECEIVE_ERROR_BACKOFF_MAX_S = 4.0
"""Longest pause between failed receives: a consumer is back within this of SQS's
return (readiness reports SQS down only after ``QF_RECEIVE_WAIT_S`` + 15 s)."""
RECEIVE_ERROR_BACKOFF = Backoff(
    first_s=RECEIVE_ERROR_BACKOFF_S, cap_s=RECEIVE_ERROR_BACKOFF_MAX_S, jitter="equal"
)
"""An SQS outage fails every consumer's polls at the same moment; with a fixed pause
they would all come back in one burst, each round, for as long as it lasts — spread over
the step, they do not, and none retries sooner than half of it."""
HEARTBEAT_S = 1.0
DLQ_POLL_S = 15.0
"""How often consumers read their dead-letter queues' depth (for the DLQ alert)."""


@dataclass(eq=False)
class Held:
    """A received message, from its receipt until it is deleted or released."""

    queue: QueueOps
    message: Message
    extended_at: float = field(default_factory=time.monotonic)
    backend_started: bool = False
    """Set once work on it may have had effects (the backend was called)."""

    async def delete(self) -> None:
        try:
            await self.queue.delete(self.message.receipt_handle)
        except Exception as exc:
            FAILURES.note("delete failed", exc, queue=self.queue.name)

    async def release(self, after_s: int = 0) -> None:
        """Visible again after ``after_s`` (0: another consumer may take it at once)."""
        metrics.WORKER_MESSAGES.labels(self.queue.name, "released").inc()
        try:
            await self.queue.change_visibility(self.message.receipt_handle, after_s)
        except Exception as exc:
            FAILURES.note("release failed", exc, queue=self.queue.name)


class Poller:
    def __init__(self, queue: QueueOps, wait_s: int) -> None:
        self.queue = queue
        self._wait_s = wait_s
        self._long = False
        self._failures = 0  # failed receives in a row
        self.last_ok = time.monotonic()

    def wants(self, free: int) -> int:
        """What the next ``receive(free)`` asks for: one on a long poll, else up to 10."""
        return 1 if self._long else max(1, min(MAX_RECEIVE_MESSAGES, free))

    async def receive(self, want: int) -> list[Held] | None:
        """Up to ``want`` messages; None when the call failed (logged, after a back-off).

        A poll is never abandoned, not even at shutdown: the server may already have taken
        messages for it, and a response nobody reads leaves them invisible for a whole
        visibility timeout (seen on the emulator; SQS gives the same guarantee no better).
        The caller releases what a poll brings once it is stopping, so a shutdown waits
        at most one long poll (``QF_RECEIVE_WAIT_S``).
        """
        long_poll = self._long
        want = self.wants(want)
        try:
            messages = await self.queue.receive(want, self._wait_s if long_poll else 0)
        except Exception as exc:
            FAILURES.note("receive failed", exc, queue=self.queue.name)
            self._failures += 1
            await asyncio.sleep(RECEIVE_ERROR_BACKOFF(self._failures))
            return None
        self._failures = 0
        self.last_ok = time.monotonic()
        self._long = not messages
        return [Held(self.queue, m) for m in messages]

    async def receive_fanout(self, calls: int) -> list[Held]:
        """``calls`` short polls of up to 10 messages at once, for a consumer that fills a
        batch: one round trip brings up to ``10 * calls`` messages. A failed call only
        brings nothing (the next fill tries again); the long-poll state is left alone."""
        results = await asyncio.gather(
            *(self.queue.receive(MAX_RECEIVE_MESSAGES, 0) for _ in range(max(1, calls))),
            return_exceptions=True,
        )
        received = [m for r in results if isinstance(r, list) for m in r]
        if any(isinstance(r, list) for r in results):
            self.last_ok = time.monotonic()
        return [Held(self.queue, m) for m in received]


class VisibilityKeeper:
    def __init__(self, timeouts_s: dict[str, int]) -> None:
        """``timeouts_s``: each queue's visibility timeout, by queue name."""
        self._timeouts_s = timeouts_s
        self._held: set[Held] = set()
        self._calls = tasks.TaskSet("visibility")

    def track(self, *held: Held) -> None:
        self._held.update(held)

    def untrack(self, *held: Held) -> None:
        self._held.difference_update(held)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            now = time.monotonic()
            for held in list(self._held):
                timeout_s = self._timeouts_s[held.queue.name]
                if now - held.extended_at >= timeout_s / 2:
                    held.extended_at = now
                    metrics.VISIBILITY_EXTENSIONS.inc()
                    self._calls.spawn(
                        held.queue.change_visibility(held.message.receipt_handle, timeout_s)
                    )


async def visibility_timeouts(*queues: QueueOps) -> dict[str, int]:
    """Each queue's VisibilityTimeout, read once at start-up."""
    return {
        q.name: int((await q.attributes("VisibilityTimeout")).get("VisibilityTimeout", "30"))
        for q in queues
    }


async def watch_depth(queues: list[QueueOps], gauge: Gauge, interval_s: float) -> None:
    """Keeps ``gauge`` (labelled by queue) at each queue's ApproximateNumberOfMessages."""
    while True:
        for queue in queues:
            try:
                gauge.labels(queue.name).set(await queue.backlog())
            except Exception as exc:
                FAILURES.note("depth read failed", exc, queue=queue.name)
        await asyncio.sleep(interval_s)


class Consumer(Protocol):
    @property
    def last_receive_ok(self) -> float: ...

    def stop(self) -> None: ...

    async def run(self) -> None: ...


async def serve(
    consumer: Consumer,
    *,
    settings: Settings,
    redis: Redis,
    dlqs: list[QueueOps],
    also_down: Callable[[], list[str]] = list,
) -> None:
    """Runs a worker or writer until SIGTERM/SIGINT, with what every consumer needs
    around it: the probe server (``/readyz`` naming what is down) and the DLQ depth."""

    async def ready() -> list[str]:
        down = await redis_down(redis) + also_down()
        if time.monotonic() - consumer.last_receive_ok > settings.receive_wait_s + 15:
            down.append("sqs")
        return down

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, consumer.stop)
    # deadlines, reports and cache expiry are judged on Redis's clock (queuefront.clock):
    # sampled once before the probe server says the process is up
    async with clock.kept_in_sync(redis):
        probes = await start_probe_server(settings.metrics_port, ready)
        try:
            async with tasks.running(
                watch_depth(dlqs, metrics.DLQ_DEPTH, DLQ_POLL_S), name="dlq-depth"
            ):
                heap.settle()  # start-up is done: see queuefront.heap
                await consumer.run()
        finally:
            await probes.cleanup()
