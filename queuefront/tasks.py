"""Background tasks: spawned, kept, and stopped for sure.

Every background task goes through here, for three reasons:

- the event loop holds only a weak reference to a task: one nobody keeps can be
  garbage-collected mid-flight. ``TaskSet`` keeps each until it ends, and forgets it then;
- a failure nobody awaits surfaces, if at all, as "Task exception was never retrieved"
  whenever the task happens to be collected. ``TaskSet`` logs it when it happens;
- on Python 3.11 a cancellation that arrives just as an ``asyncio.timeout`` inside the
  task expires can be swallowed (it surfaces as the TimeoutError the loop then handles),
  and a loop that catches it goes on as if nothing happened: a shutdown that waits for it
  hangs. ``stop`` cancels until the task has really ended; loops should also check a flag.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

from queuefront.failures import FailureLog
from queuefront.telemetry import get_logger

log = get_logger(__name__)
FAILURES = FailureLog(log)

T = TypeVar("T")

RECANCEL_S = 0.5


async def stop(task: asyncio.Task[Any] | None) -> None:
    """Cancels ``task`` and waits for it, cancelling again if a cancel was swallowed."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_S)
    if not task.cancelled():
        task.exception()  # retrieved: a failure here is not worth a warning at exit


class TaskSet:
    """An owner's background tasks: each kept until it ends, its failure logged.

    ``what`` names the owner in the failure's log line.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            FAILURES.note(
                f"{self._what}: background task failed", exc, task=task.get_name(), traceback=True
            )

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self) -> None:
        """Until every task has ended, those spawned meanwhile too."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def stop(self) -> None:
        """Stops every task (``stop``) and waits for them all."""
        while self._tasks:
            await asyncio.gather(*(stop(t) for t in list(self._tasks)))


@contextlib.asynccontextmanager
async def running(coro: Coroutine[Any, Any, Any], *, name: str) -> AsyncIterator[asyncio.Task[Any]]:
    """One background task for as long as the block runs, its failure logged; stopped
    (``stop``) when the block ends, however it ends."""
    owner = TaskSet(name)
    try:
        yield owner.spawn(coro, name=name)
    finally:
        await owner.stop()
