"""How fast the workers drain the queues: reported by each worker, estimated by each pod.

Admission needs a queue's expected wait, which is its backlog divided by the rate at
which workers drain it. The backlog comes from SQS; the rate comes from here. Every
worker writes, once per ``REPORT_INTERVAL_S``, one field of the Redis hash ``workers``:
its slots and two running totals — messages completed and the seconds they took. A pod
reads the whole hash once per backlog poll and turns successive totals into:

- ``rate``: messages completed per second by all live workers (each worker's own rate,
  smoothed over its reports, summed);
- ``service_s``: mean time one message takes (backend call and reply);
- ``potential``: what the live workers could complete if busy (slots / service time),
  their slots counted within the backend limit they share (``QF_BACKEND_MAX_CONCURRENCY``,
  which each report carries): ten workers of 100 slots sharing a limit of 400 can hold
  400 calls, not 1,000, and a pod that counted 1,000 would admit a backlog that the
  workers then refuse late.

Why totals and not rates: a report that goes missing (a slow poll, a restarted pod)
loses nothing, the next difference covers it. Why the potential: after an idle period
the completion rate says nothing about capacity; until the backlog has stood for a while
(``saturated``), the larger of the two is used, so a burst is not refused merely because
the workers were idle before it. Once the backlog persists, the workers are draining as
fast as they can and the measured rate *is* the capacity.

Recent evidence only. An estimate that only a completion can change is a trap for
admission: once it says "too slow", requests are refused, nothing completes, and it says
so for ever (a slow spell once closed every route until the api restarted). So nothing
here waits for a completion to change: a worker's rate is measured again at each of its
reports (one with nothing completed measures zero), and the service time is the mean of
the completions seen in the last ``SERVICE_WINDOW_S``. With none in the window the last
mean stands — after a quiet spell it is still the best guess — but its age is known
(``stale``), and admission lets a probe through when a stale estimate is what refuses
(``service.admission``), so the estimate is measured again rather than believed.

Times. A report's ``at`` is on the reference clock (``queuefront.clock``), the one the
pods judge freshness on: a worker whose wall clock is off neither looks dead nor sent from
the future. Rates divide by differences of ``at`` between reports of the same worker,
which that worker's monotonic clock made.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec
from redis.asyncio import Redis

from queuefront.clock import CLOCK
from queuefront.keys import Keys

REPORT_INTERVAL_S = 1.0
STALE_AFTER_S = 5.0
"""A worker whose last report is older than this is not counted (stopped or partitioned)."""
FORGET_AFTER_S = 120.0
"""Reports older than this are removed from the hash by the pods that read it."""
SMOOTHING = 0.3
"""Weight of a worker's newest rate measurement in its smoothed rate."""
SERVICE_WINDOW_S = 5.0
"""The service time is the mean of the completions a pod saw in this many seconds: long
enough for a stable mean under load, short enough that what a probe measures after a slow
spell is not averaged with the spell (the spell's completions have left the window by the
time a probe is let through)."""
MIN_SERVICE_S = 0.001


class DrainReport(msgspec.Struct, frozen=True, array_like=True):
    at: float
    """Unix time of the report, on the reference clock (``queuefront.clock``)."""
    slots: int
    completed: int
    """Messages completed since the worker started."""
    busy_s: float
    """Seconds those messages took, summed."""
    shared_limit: int = 0
    """The backend limit this worker shares with the others (``QF_BACKEND_MAX_CONCURRENCY``;
    0: none). Last and defaulted, so that reports with and without it decode either way
    during a rolling deploy."""


def usable_slots(reports: Iterable[DrainReport]) -> int:
    """Backend calls the reporting workers can hold at once: the slots of those without a
    shared limit, plus those of the others within the largest limit they obey (each worker
    takes a lease only while fewer than its own limit are held, so together they never
    hold more than the largest)."""
    unlimited = limited = limit = 0
    for r in reports:
        if r.shared_limit > 0:
            limited += r.slots
            limit = max(limit, r.shared_limit)
        else:
            unlimited += r.slots
    return unlimited + min(limited, limit)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(DrainReport)


class DrainReporter:
    """The worker side: count completions, publish the totals every second."""

    def __init__(
        self, redis: Redis, keys: Keys, worker_id: str, slots: int, shared_limit: int = 0
    ) -> None:
        self._redis = redis
        self._key = keys.workers()
        self._id = worker_id
        self._slots = slots
        self._shared_limit = shared_limit
        self._completed = 0
        self._busy_s = 0.0

    def record(self, duration_s: float) -> None:
        self._completed += 1
        self._busy_s += duration_s

    def report(self) -> DrainReport:
        return DrainReport(
            CLOCK.now(), self._slots, self._completed, self._busy_s, self._shared_limit
        )

    async def run(self) -> None:
        """Publishes until cancelled (``queuefront.tasks.stop``); a failed write is simply
        retried next interval."""
        # the first report already on the reference clock, not on this host's
        await CLOCK.ensure_synced(self._redis)
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


@dataclass(frozen=True)
class _Seen:
    """A live worker's latest report, and its rate as measured by its reports so far."""

    report: DrainReport
    rate: float | None = None
    """Completions per second, smoothed; None until a second report of it was read."""


@dataclass
class DrainEstimate:
    """The pod side: turns the reports' totals into a rate, a service time, a potential."""

    rate: float = 0.0
    service_s: float = 0.0
    potential: float = 0.0
    live_workers: int = 0
    slots: int = 0
    """Slots of the live workers, within the backend limit they share (``usable_slots``)."""
    measured_at: float | None = None
    """Monotonic time (the pod's) at which a completion was last seen; None: never."""
    _seen: dict[str, _Seen] = field(default_factory=dict)
    _recent: deque[tuple[float, int, float]] = field(default_factory=deque)
    """(seen at, messages completed, seconds they took) of the last SERVICE_WINDOW_S."""

    def update(self, reports: dict[str, DrainReport], now: float, seen_at: float) -> list[str]:
        """Folds in a fresh read of the hash (``now``: reference clock; ``seen_at``: this
        pod's monotonic clock); returns the ids of long-gone workers."""
        live = {w: r for w, r in reports.items() if now - r.at < STALE_AFTER_S}
        seen: dict[str, _Seen] = {}
        for worker, report in live.items():
            before = self._seen.get(worker)
            if before is None or report.completed < before.report.completed:
                seen[worker] = _Seen(report)  # new (or restarted under the same id)
                continue
            elapsed = report.at - before.report.at
            if elapsed <= 0:  # not reported again since the last read: nothing new
                seen[worker] = before
                continue
            done = report.completed - before.report.completed
            measured = done / elapsed
            rate = (
                measured
                if before.rate is None
                else (before.rate + SMOOTHING * (measured - before.rate))
            )
            seen[worker] = _Seen(report, rate)
            if done > 0:
                self._recent.append((seen_at, done, report.busy_s - before.report.busy_s))
                self.measured_at = seen_at
        self._seen = seen
        while self._recent and seen_at - self._recent[0][0] > SERVICE_WINDOW_S:
            self._recent.popleft()
        if self._recent:
            done_total = sum(done for _, done, _ in self._recent)
            self.service_s = max(0.0, sum(busy for _, _, busy in self._recent)) / done_total
        self.rate = sum(s.rate or 0.0 for s in seen.values())
        self.slots = usable_slots(live.values())
        # no service time measured yet (fresh workers): no evidence of any limit either
        service = max(self.service_s, MIN_SERVICE_S)
        self.potential = self.slots / service if self.service_s else math.inf
        self.live_workers = len(live)
        return [w for w, r in reports.items() if now - r.at > FORGET_AFTER_S]

    def stale(self, seen_at: float) -> bool:
        """True when the service time rests on old completions only: none seen for the
        window and one more service time (whatever was running when the last one was seen
        would have completed since). Also true before any completion was seen."""
        if self.measured_at is None:
            return True
        return seen_at - self.measured_at > SERVICE_WINDOW_S + self.service_s

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
