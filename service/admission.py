"""Admission control for normal-priority requests, driven by the high queue's backlog.

The backlog is read by one background task per pod, at most once per ``backlog_poll_s``,
never per request: a GetQueueAttributes call costs a round trip and ~2 ms of CPU, and
a burst of thousands of requests must not turn into thousands of them.

Why gate normal work on the *high* queue: the kiosk's logins (high) must keep their
reply window while catalogue browsing (normal) waits or is shed; normal requests that
would only sit behind a full high queue and time out are refused early with 503 and
``Retry-After``, which clients and CloudFront understand.
"""

from __future__ import annotations

import asyncio
import time

from queuefront import metrics
from queuefront.sqs import QueueOps
from queuefront.telemetry import get_logger

log = get_logger(__name__)


class BacklogMonitor:
    def __init__(
        self, high: QueueOps, normal: QueueOps, *, threshold: int, wait_s: float, poll_s: float
    ) -> None:
        self._high = high
        self._normal = normal
        self.threshold = threshold
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.high_backlog = 0
        self.last_ok = 0.0
        """Monotonic time of the last successful read (readiness uses it)."""
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        return time.monotonic() - self.last_ok < max(3 * self.poll_s, 5.0)

    async def start(self) -> None:
        await self._poll_once()
        self._task = asyncio.create_task(self._run(), name="backlog-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def admit(self) -> bool:
        """True at once while the high backlog is under the threshold; else waits up to
        ``wait_s`` for it to drop and returns False if it does not."""
        if self.high_backlog < self.threshold:
            return True
        try:
            async with self._changed:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.high_backlog < self.threshold),
                    self.wait_s,
                )
            return True
        except TimeoutError:
            return False

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            await self._poll_once()

    async def _poll_once(self) -> None:
        try:
            high, normal = await asyncio.gather(self._high.backlog(), self._normal.backlog())
        except Exception as exc:
            log.warning("backlog read failed", error=str(exc))
            return
        metrics.QUEUE_BACKLOG.labels(self._high.name).set(high)
        metrics.QUEUE_BACKLOG.labels(self._normal.name).set(normal)
        self.last_ok = time.monotonic()
        async with self._changed:
            self.high_backlog = high
            self._changed.notify_all()
