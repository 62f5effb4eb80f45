"""Reading what the processes say about themselves: metrics, and waiting for a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


async def metric(url: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` at ``url`` whose labels include ``labels``."""
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        text = await resp.text()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Polls ``check`` until it is true; fails naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        await asyncio.sleep(0.1)


async def backend_calls(backend_url: str, key: str) -> int:
    """How often the demo backend was called for ``"<METHOD> <path>"``."""
    async with aiohttp.ClientSession() as http, http.get(f"{backend_url}/__stats") as resp:
        return int((await resp.json())["calls"].get(key, 0))
