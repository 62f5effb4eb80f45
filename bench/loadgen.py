"""A closed-loop HTTP load generator: ``concurrency`` clients, each sending its next
request when the previous one is answered, for a fixed number of requests.

Bounded by count and by a time limit, loopback only.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_s: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies_s) * 1000

    @property
    def p99_ms(self) -> float:
        return self.pct(0.99) * 1000


async def run_load(
    base_url: str,
    paths: list[str],
    *,
    concurrency: int,
    time_limit_s: float = 120.0,
) -> LoadResult:
    assert base_url.startswith(("http://127.0.0.1", "http://localhost")), "loopback only"
    latencies: list[float] = []
    errors = 0
    next_index = 0
    deadline = time.monotonic() + time_limit_s
    connector = aiohttp.TCPConnector(limit=concurrency)

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal next_index, errors
        while next_index < len(paths) and time.monotonic() < deadline:
            path = paths[next_index]
            next_index += 1
            started = time.perf_counter()
            try:
                async with http.get(base_url + path) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return LoadResult(len(latencies), errors, seconds, latencies)
