"""Request bodies: read once, within the route's limit and the process's byte budget.

Why a budget: a pod bounds the requests waiting for replies by count
(``QF_MAX_PENDING_REPLIES``), but four thousand bodies of a megabyte are four gigabytes
— 600 clients posting 900 KiB each took one api process from 82 MiB to 1.8 GiB, past
what its task may use. So each body counts against ``QF_MAX_PENDING_BYTES`` from before
it is read until the process no longer holds it: once it is on the queue (a proxied
request waits for its reply holding nothing of it), or when the request ends. A request
that would take the total past the budget is refused at once, before its body is read
(``503``, counted as the admission rejection ``pending_bytes``): the bytes it would
have cost are never allocated.

Why a limit per route: most routes need far less than an SQS message; a login needs a
few kilobytes. ``max_body_bytes`` in the route table refuses more with ``413`` — from
``Content-Length`` before anything is read, or as soon as a chunked body passes it.

Why not ``request.read()``: aiohttp keeps what it reads on the request, which lives
until the response is sent — through the whole wait for the reply. A ``Body`` is the
one place that holds the bytes, and ``take()`` hands them over and lets go.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from queuefront import metrics
from service.errors import ApiError

READ_CHUNK_BYTES = 65_536


class Budget:
    """Bytes of request bodies one process holds, and the most it may hold."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.used_bytes = 0

    def reserve(self, n: int) -> bool:
        if n and self.used_bytes + n > self.limit_bytes:
            return False
        self._add(n)
        return True

    def release(self, n: int) -> None:
        self._add(-n)

    def _add(self, n: int) -> None:
        if n:
            self.used_bytes += n
            metrics.PENDING_BYTES.set(self.used_bytes)


class Body:
    """One request's body; its bytes count against the budget until ``release``."""

    __slots__ = ("_budget", "_data", "_held")

    def __init__(self, data: bytes, budget: Budget | None = None, held: int = 0) -> None:
        self._data = data
        self._budget = budget
        self._held = held

    @property
    def data(self) -> bytes:
        """The bytes, for a look that keeps no reference (a fingerprint, a parse)."""
        return self._data

    def take(self) -> bytes:
        """The bytes, once: this ``Body`` holds them no more (the caller's copy is the
        last one; the budget is released when the caller says it is done)."""
        data, self._data = self._data, b""
        return data

    def fill(self, data: bytes) -> None:
        """The bytes as read: a reservation larger than them (a chunked body's) shrinks."""
        self._data = data
        if self._budget is not None and len(data) < self._held:
            self._budget.release(self._held - len(data))
            self._held = len(data)

    def release(self) -> None:
        """Nothing of the body is held any more: its bytes leave the budget. Idempotent."""
        self._data = b""
        if self._budget is not None and self._held:
            self._budget.release(self._held)
        self._held = 0


EMPTY = Body(b"")


async def read(
    request: web.Request, budget: Budget, *, limit_bytes: int, route: str, window_s: float
) -> Body:
    """The request's body, or the 413/503/408 that refuses it.

    ``limit_bytes``: the route's limit; ``window_s``: how long the body may take to
    arrive (a client that trickles it must not hold a share of the budget for longer
    than the route's window).
    """
    declared = request.content_length
    if declared is not None and declared > limit_bytes:
        raise _too_large(limit_bytes)
    if not request.body_exists:
        return EMPTY
    # a chunked body may be anything up to the limit: its reservation is the limit
    reserved = declared if declared is not None else limit_bytes
    if not budget.reserve(reserved):
        metrics.ADMISSION_REJECTIONS.labels(route, "pending_bytes").inc()
        raise ApiError(
            503,
            "overloaded",
            "this pod holds too many request bytes already "
            f"(QF_MAX_PENDING_BYTES={budget.limit_bytes}); retry later",
            headers={"Retry-After": "1"},
        )
    body = Body(b"", budget, reserved)
    try:
        async with asyncio.timeout(window_s):
            data = await _read_within(request, limit_bytes)
    except TimeoutError:
        body.release()
        raise ApiError(
            408, "request_timeout", f"the request body did not arrive within {window_s:g} s"
        ) from None
    except BaseException:
        body.release()
        raise
    body.fill(data)
    return body


async def _read_within(request: web.Request, limit_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(READ_CHUNK_BYTES):
        size += len(chunk)
        if size > limit_bytes:
            raise _too_large(limit_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit_bytes: int) -> ApiError:
    return ApiError(
        413, "payload_too_large", f"request body over this route's limit of {limit_bytes} bytes"
    )
