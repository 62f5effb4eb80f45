"""One clock for every time that one process writes and another reads: Redis's.

Several times cross process boundaries, and the processes run on hosts (tasks, containers)
whose wall clocks need not agree:

- a request's deadline and enqueue time: the api writes them into the envelope, a worker
  reads them (a worker 30 s ahead dropped everything as expired; one behind called the
  backend for requests nobody waited for any more);
- the workers' drain reports: a worker stamps them, every pod judges their freshness (a
  worker 6 s behind looked dead to every pod, which then refused everything with "no
  worker is draining the queue");
- the shared cache's ``expires_at``/``stale_until``: a worker writes them, every pod
  compares them with its own now;
- an ingest item's ``received_at``: the api stamps it, the writer measures the lag.

So all of them are written and read on one reference clock, Redis's ``TIME``, which every
process already talks to (the rate limiter's GCRA already runs on it). Each process
samples ``TIME`` every ``SYNC_INTERVAL_S`` — never on a request's path — and takes the
server's reading as of the midpoint of the round trip, which is wrong by at most half the
round trip; of the last ``SAMPLES_KEPT`` samples the one with the shortest round trip wins
(a sample taken while the event loop or Redis was busy is the least exact). Between
samples the reference is the process's monotonic clock plus that offset: a step of the
local wall clock (a VM resumed, an NTP correction) changes nothing, and reading it costs
no round trip.

Before the first sample (Redis not reachable at start-up) the local wall clock stands in.
``queuefront_clock_offset_seconds`` exports how far the local wall clock is from the
reference; nothing here depends on it being small, but other things do (SigV4 signing
refuses requests more than 5 minutes off, log timestamps, JWT ``exp`` checks), so it has
an alert of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from redis.asyncio import Redis

from queuefront import metrics, tasks
from queuefront.failures import FailureLog
from queuefront.telemetry import get_logger

log = get_logger(__name__)
FAILURES = FailureLog(log)

SYNC_INTERVAL_S = 5.0
"""How often a process samples Redis's ``TIME``: a round trip every 5 s, on no request's
path. Monotonic clocks drift by parts per million, so the offset found holds far longer."""
SYNC_TIMEOUT_S = 1.0
SAMPLES_KEPT = 6
"""Samples among which the one with the shortest round trip is used (30 s of them)."""


@dataclass(frozen=True)
class Sample:
    base_s: float
    """Reference time minus this process's monotonic time."""
    rtt_s: float
    """Round trip of the ``TIME`` call: the sample is exact to half of it."""


class ReferenceClock:
    """Unix time on Redis's clock, read without a round trip (see the module notes)."""

    def __init__(self) -> None:
        self._samples: deque[Sample] = deque(maxlen=SAMPLES_KEPT)
        self._base_s = time.time() - time.monotonic()
        self.synced = False

    def now(self) -> float:
        return time.monotonic() + self._base_s

    def offset_s(self) -> float:
        """How far this process's wall clock is ahead of the reference (negative: behind)."""
        return time.time() - self.now()

    def uncertainty_s(self) -> float:
        """Half the round trip of the sample in use: the most ``now()`` can be off by."""
        return min(s.rtt_s for s in self._samples) / 2 if self._samples else float("inf")

    def add_sample(self, server_s: float, sent_s: float, received_s: float) -> None:
        """One ``TIME`` reading ``server_s``, asked at monotonic ``sent_s`` and answered
        at ``received_s``."""
        self._samples.append(Sample(server_s - (sent_s + received_s) / 2, received_s - sent_s))
        self._base_s = min(self._samples, key=lambda s: s.rtt_s).base_s
        self.synced = True
        metrics.CLOCK_OFFSET.set(self.offset_s())

    async def sync(self, redis: Redis) -> None:
        """One sample of Redis's ``TIME``; raises what the call raised."""
        sent = time.monotonic()
        async with asyncio.timeout(SYNC_TIMEOUT_S):
            seconds, micros = await redis.time()
        self.add_sample(seconds + micros / 1_000_000, sent, time.monotonic())

    async def ensure_synced(self, redis: Redis) -> None:
        """At start-up: one sample if there is none yet; a failure is logged, not raised
        (the local wall clock stands in until ``run`` gets one)."""
        if self.synced:
            return
        try:
            await self.sync(redis)
        except Exception as exc:
            FAILURES.note("clock sync failed", exc)
            return
        log.info(
            "clock synced with redis",
            offset_s=round(self.offset_s(), 4),
            uncertainty_s=round(self.uncertainty_s(), 4),
        )

    async def run(self, redis: Redis) -> None:
        """Samples every ``SYNC_INTERVAL_S`` until cancelled."""
        await self.ensure_synced(redis)
        while True:
            await asyncio.sleep(SYNC_INTERVAL_S)
            try:
                await self.sync(redis)
            except Exception as exc:
                FAILURES.note("clock sync failed", exc)


CLOCK = ReferenceClock()
"""The process's reference clock: one per process, like its metrics registry."""


def now() -> float:
    """Unix time on the reference clock: what every cross-process time is written in."""
    return CLOCK.now()


@contextlib.asynccontextmanager
async def kept_in_sync(redis: Redis) -> AsyncIterator[ReferenceClock]:
    """Samples the reference clock for as long as the block runs (one sample first)."""
    await CLOCK.ensure_synced(redis)
    async with tasks.running(CLOCK.run(redis), name="clock-sync"):
        yield CLOCK
