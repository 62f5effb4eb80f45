"""How fast the workers drain the queues: reported by each worker, estimated by each pod.

Admission needs a queue's expected wait, which is its backlog divided by the rate at
which workers drain it. The backlog comes from SQS; the rate comes from here. Every
worker writes, once per ``REPORT_INTERVAL_S``, one field of the Redis hash ``workers``:
its slots and two running totals — messages completed and the seconds they took. A pod
reads the whole hash once per backlog poll and turns successive totals into:

- ``rate``: messages completed per second by all live workers (smoothed);
- ``service_s``: mean time one message takes (backend call and reply);
- ``potential``: what the live workers could complete if busy (slots / service time).

Why totals and not rates: a report that goes missing (a slow poll, a restarted pod)
loses nothing, the next difference covers it. Why the potential: after an idle period
the completion rate says nothing about capacity; until the backlog has stood for a while
(``saturated``), the larger of the two is used, so a burst is not refused merely because
the workers were idle before it. Once the backlog persists, the workers are draining as
fast as they can and the measured rate *is* the capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass

import msgspec
from redis.asyncio import Redis

from queuefront.keys import Keys

REPORT_INTERVAL_S = 1.0
STALE_AFTER_S = 5.0
"""A worker whose last report is older than this is not counted (stopped or partitioned)."""
FORGET_AFTER_S = 120.0
"""Reports older than this are removed from the hash by the pods that read it."""
SMOOTHING = 0.3
"""Weight of the newest measurement in the rate and service-time averages."""
MIN_SERVICE_S = 0.001


class DrainReport(msgspec.Struct, frozen=True, array_like=True):
    at: float
    """Unix time of the report."""
    slots: int
    completed: int
    """Messages completed since the worker started."""
    busy_s: float
    """Seconds those messages took, summed."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(DrainReport)


class DrainReporter:
    """The worker side: count completions, publish the totals every second."""

    def __init__(self, redis: Redis, keys: Keys, worker_id: str, slots: int) -> None:
        self._redis = redis
        self._key = keys.workers()
        self._id = worker_id
        self._slots = slots
        self._completed = 0
        self._busy_s = 0.0

    def record(self, duration_s: float) -> None:
        self._completed += 1
        self._busy_s += duration_s

    def report(self) -> DrainReport:
        return DrainReport(time.time(), self._slots, self._completed, self._busy_s)

    async def run(self) -> None:
        """Publishes until cancelled (``queuefront.tasks.stop``); a failed write is simply
        retried next interval."""
        try:
            while True:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self._redis.hset(self._key, self._id, _encoder.encode(self.report())),
                        REPORT_INTERVAL_S,
                    )
                await asyncio.sleep(REPORT_INTERVAL_S)
        finally:
            # a stopping worker no longer counts towards the pods' capacity estimate
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._redis.hdel(self._key, self._id), 1.0)


@dataclass
class DrainEstimate:
    """The pod side: turns the reports' totals into a rate, a service time, a potential."""

    rate: float = 0.0
    service_s: float = 0.0
    potential: float = 0.0
    live_workers: int = 0
    _last: dict[str, DrainReport] | None = None

    def update(self, reports: dict[str, DrainReport], now: float) -> list[str]:
        """Folds in a fresh read of the hash; returns the ids of long-gone workers."""
        last = self._last or {}
        live = {w: r for w, r in reports.items() if now - r.at < STALE_AFTER_S}
        rate = done = busy = 0.0
        for worker, report in live.items():
            before = last.get(worker)
            if before is None or report.at <= before.at:
                continue
            rate += (report.completed - before.completed) / (report.at - before.at)
            done += report.completed - before.completed
            busy += report.busy_s - before.busy_s
        if self._last is not None:
            self.rate += SMOOTHING * (rate - self.rate)
        if done > 0:
            measured = busy / done
            self.service_s = measured if not self.service_s else (
                self.service_s + SMOOTHING * (measured - self.service_s)
            )
        # no service time measured yet (fresh workers): no evidence of any limit either
        service = max(self.service_s, MIN_SERVICE_S)
        slots = sum(r.slots for r in live.values())
        self.potential = slots / service if self.service_s else math.inf
        self.live_workers = len(live)
        self._last = live
        return [w for w, r in reports.items() if now - r.at > FORGET_AFTER_S]

    def drain_rate(self, *, saturated: bool) -> float:
        """Messages per second the queue can be expected to lose (see the module notes)."""
        if self.live_workers == 0:
            return 0.0
        return self.rate if saturated else max(self.rate, self.potential)


async def read_reports(redis: Redis, keys: Keys) -> dict[str, DrainReport]:
    raw = await redis.hgetall(keys.workers())
    out: dict[str, DrainReport] = {}
    for worker, value in raw.items():
        with contextlib.suppress(msgspec.DecodeError):
            name = worker.decode() if isinstance(worker, bytes) else str(worker)
            out[name] = _decoder.decode(value if isinstance(value, bytes) else value.encode())
    return out


async def forget(redis: Redis, keys: Keys, workers: list[str]) -> None:
    if workers:
        await redis.hdel(keys.workers(), *workers)
