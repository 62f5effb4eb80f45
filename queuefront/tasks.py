"""Stopping background tasks for sure.

On Python 3.11 a cancellation that arrives just as an ``asyncio.timeout`` inside the task
expires can be swallowed (it surfaces as the TimeoutError the loop then handles), and a
loop that catches it goes on as if nothing happened: a shutdown that waits for it hangs.
``stop`` cancels until the task has really ended; loops should also check a flag.
"""

from __future__ import annotations

import asyncio
from typing import Any

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
