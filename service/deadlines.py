"""Calls to dependencies on a request's path: bounded by its deadline, failing as 503.

Every Redis command and SQS call an api request makes goes through ``bounded``: it runs
under ``min(cap, what is left of the request's window)``, and a dependency that is slow,
down or out of connections becomes ``503 {"error": "unavailable", "dependency": …}``
with ``Retry-After`` — never a 500, never a wait past the window — and one log line per
failure class per interval instead of one traceback per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar

from redis.exceptions import OutOfMemoryError

from queuefront.failures import FailureLog
from queuefront.sqs import SQSEntryError
from queuefront.telemetry import get_logger
from service.errors import DEPENDENCY_ERRORS, redis_full, unavailable

log = get_logger(__name__)
FAILURES = FailureLog(log)

REDIS_CALL_S = 1.0
"""Longest a request waits for one Redis round trip (a healthy Redis takes < 1 ms)."""
SQS_SEND_S = 2.5
"""Longest a request waits for SQS to accept it: a frozen SQS is answered within 3 s."""

T = TypeVar("T")
Dependency = Literal["redis", "sqs"]
GUARDED_ERRORS: tuple[type[BaseException], ...] = (*DEPENDENCY_ERRORS, SQSEntryError)


class Deadline:
    """A request's deadline on the monotonic clock (immune to wall-clock steps)."""

    __slots__ = ("at",)

    def __init__(self, window_s: float) -> None:
        self.at = time.monotonic() + window_s

    def left(self) -> float:
        return self.at - time.monotonic()

    def bound(self, cap_s: float) -> float:
        """``cap_s``, or less when the window ends sooner (never below 1 ms)."""
        return max(0.001, min(cap_s, self.left()))


async def bounded(
    dependency: Dependency, what: str, timeout_s: float, call: Awaitable[T]
) -> T:
    """Awaits ``call`` for at most ``timeout_s``; a dependency failure becomes a 503.

    The call runs in a task of its own and is abandoned (cancelled, not awaited) when
    its time is up: a client library that is slow to give up after a cancellation (a
    frozen peer, a handshake in progress) cannot hold the request past its deadline.
    """
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if done:
        exc = task.exception()
        if exc is None:
            return task.result()
    else:
        task.cancel()
        task.add_done_callback(_consume)
        exc = TimeoutError(f"no answer within {timeout_s:.3f} s")
    if isinstance(exc, OutOfMemoryError):
        FAILURES.note("redis out of memory", exc, what=what)
        raise redis_full(what) from None
    if isinstance(exc, GUARDED_ERRORS):
        FAILURES.note(f"{dependency} unavailable", exc, what=what)
        raise unavailable(dependency, what) from None
    raise exc


@asynccontextmanager
async def guarded(dependency: Dependency, what: str, timeout_s: float) -> AsyncIterator[None]:
    """``bounded`` for a call that stops at once when cancelled (our own batchers, whose
    callers wait on a shielded future): no task of its own, so cheaper per request."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except OutOfMemoryError as exc:
        FAILURES.note("redis out of memory", exc, what=what)
        raise redis_full(what) from None
    except GUARDED_ERRORS as exc:
        FAILURES.note(f"{dependency} unavailable", exc, what=what)
        raise unavailable(dependency, what) from None


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
