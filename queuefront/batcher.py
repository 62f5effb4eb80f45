"""Coalesce concurrent single-item calls into batch calls.

Every SQS write (send, delete, change visibility) costs one HTTP round trip and about
2 ms of client CPU whether it carries one entry or ten, so the callers submit single
items and this class packs whatever arrives within a short linger into one call.
Each caller still gets its own outcome: ``submit`` returns when *its* entry succeeded
and raises *its* entry's error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from queuefront.limits import MAX_BATCH_BYTES, MAX_BATCH_ENTRIES

T = TypeVar("T")
R = TypeVar("R")

FlushFn = Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]]


def _consume_outcome(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class Batcher(Generic[T, R]):
    """Packs items into batches of at most ``max_entries`` items and ``max_bytes`` bytes.

    A batch is flushed when it is full or ``linger_s`` after its first item; up to
    ``max_in_flight`` batches are in flight at once, so a slow call never stalls the
    next batch.

    ``linger_s=None`` is group commit instead of a timer: while no call is in flight a
    batch leaves at once (with whatever arrived in the same turn of the event loop);
    while one is, items gather and leave together when it returns (or when full). The
    batch size then follows the load by itself — one item when idle, at no added
    latency, and as many as arrive during one round trip under load — where a fixed
    linger adds its delay to every request and still caps the rate at what fits in one
    linger per call.
    """

    def __init__(
        self,
        flush: FlushFn[T, R],
        *,
        linger_s: float | None,
        max_entries: int = MAX_BATCH_ENTRIES,
        max_bytes: int = MAX_BATCH_BYTES,
        size_of: Callable[[T], int] = lambda _: 0,
        max_in_flight: int = 16,
    ) -> None:
        self._flush_fn = flush
        self._linger_s = linger_s
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._size_of = size_of
        self._slots = asyncio.Semaphore(max_in_flight)
        self._items: list[T] = []
        self._futures: list[asyncio.Future[R]] = []
        self._bytes = 0
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def submit(self, item: T) -> R:
        if self._closed:
            raise RuntimeError("batcher is closed")
        size = self._size_of(item)
        if self._items and self._bytes + size > self._max_bytes:
            self._flush()
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_consume_outcome)  # no "never retrieved" noise if the caller left
        self._items.append(item)
        self._futures.append(fut)
        self._bytes += size
        if len(self._items) >= self._max_entries:
            self._flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            if self._linger_s is not None:
                self._timer = loop.call_later(self._linger_s, self._flush)
            elif self._in_flight == 0:  # group commit: idle, so this turn's items go now
                self._timer = loop.call_soon(self._flush)
        # shield: a cancelled caller (client went away, deadline passed) must not cancel its
        # batch-mates' call; its own entry is dropped if its batch has not been sent yet
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            fut.cancel()
            raise

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._items:
            return
        items, futures = self._items, self._futures
        self._items, self._futures, self._bytes = [], [], 0
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._send(items, futures))
        self._tasks.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight -= 1
        # group commit: what gathered during the call leaves now
        if self._linger_s is None and self._items and self._timer is None:
            self._timer = asyncio.get_running_loop().call_soon(self._flush)

    async def _send(self, items: list[T], futures: list[asyncio.Future[R]]) -> None:
        async with self._slots:
            # entries whose callers gave up while the batch waited for a slot are not sent
            live = [i for i, fut in enumerate(futures) if not fut.done()]
            if not live:
                return
            if len(live) < len(items):
                items = [items[i] for i in live]
                futures = [futures[i] for i in live]
            try:
                outcomes = await self._flush_fn(items)
            except BaseException as exc:  # the whole call failed: every entry fails with it
                outcomes = [exc] * len(items)
                if isinstance(exc, asyncio.CancelledError):
                    for fut in futures:
                        fut.cancel()
                    raise
        for fut, outcome in zip(futures, outcomes, strict=True):
            if fut.done():
                continue
            if isinstance(outcome, BaseException):
                fut.set_exception(outcome)
            else:
                fut.set_result(outcome)

    async def close(self) -> None:
        """Flushes what is pending and waits for every call in flight."""
        self._closed = True
        self._flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
