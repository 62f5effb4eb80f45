"""Admission: a request is queued only if it can still be answered within its window.

Each pod keeps an estimate of every queue's wait — the backlog ahead of a new request
divided by the rate at which the workers drain the queues — and refuses at once, with
``503`` and a ``Retry-After`` derived from the estimate, a request whose predicted wait
plus service time would not fit in its window less a margin (``usable_s``: all but
``ADMISSION_MARGIN_S``, or all but ``ADMISSION_MARGIN_SHARE`` of a short window). Refusing
early is the point: a request queued past its window costs a queue slot, a worker slot
and a backend call and still ends in a 504, and those costs are what turn an overload
into a collapse.

Where the numbers come from:
- backlog: ``ApproximateNumberOfMessages`` of the high and normal queues, read by one
  task per pod once per ``QF_BACKLOG_POLL_S`` (never per request: a GetQueueAttributes
  call costs a round trip and ~2 ms of CPU), plus what this pod admitted since;
- drain rate and service time: the workers' reports in Redis (``queuefront.drain``),
  read in the same poll.

Probes. Every input of the prediction is measured again at each poll except one: the
service time is measured only when something completes. After a spell in which backend
calls ran into the window it says "no room", requests are refused, nothing completes —
and without more it would say so until the pod restarted. So when the estimate rests on
old completions only (``DrainEstimate.stale``) and it is the service time, not the
backlog, that leaves no room, one request per pod is admitted anyway (a probe; again
once its window has passed): if the backend has recovered it completes at once, the
estimate is measured afresh and admission reopens; if not, one request per pod per
window pays for finding out. A probe is counted in the backlog like any admitted
request, so it never takes room that a later admission counted on, and it is never
let through while the queue itself is too long or no worker reports.

High priority keeps its precedence without a rule of its own: workers take high work
first, so a high request waits only for the high backlog while a normal one waits for
both — under overload normal work is refused first. The older rule stays for normal
routes: while the high backlog is at or above ``QF_ADMISSION_THRESHOLD``, a normal
request waits up to ``QF_ADMISSION_WAIT_S`` for it to drop, then gets a 503.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

from queuefront import clock, drain, metrics, tasks
from queuefront.failures import FailureLog
from queuefront.keys import Keys
from queuefront.sqs import QueueOps
from queuefront.telemetry import get_logger

log = get_logger(__name__)
FAILURES = FailureLog(log)

Priority = Literal["high", "normal"]

ADMISSION_MARGIN_S = 1.0
"""Seconds of a request's window that its predicted wait and service time may not use:
room for what the estimate does not see — the backlog is up to one poll old
(``QF_BACKLOG_POLL_S``, 1 s by default: other pods' admissions since then are not in it),
the drain reports a second old, the reply's way back.

It need not cover the worst case: the workers' late refusal (``workers/priority/pace.py``,
``QF_WORKER_REFUSE_LATE``, on by default) is the backstop for an estimate that was wrong. A
message that reaches a worker with less of its window left than a call now takes is
answered ``503`` at once, after its queue wait — a fast 503 instead of a 504, and no
backend slot spent. What a margin costs is paid at every request: it refuses at the door
requests the backend could have answered. A share of the window cost the most where the
backend was slowest: with 16 s calls in a 20 s window (the simulated brownout,
bench/scaling/scenarios/backend-brownout.toml), 20 % of the window left no room for any
wait, and the pods refused nearly everything while the backend had slots to spare. A fixed
margin of one default poll leaves 3 s of wait there; the simulator gave about the same
goodput for margins of 0.5 to 3 s, so the value is not delicate. What a small margin costs
shows at ten times capacity (bench/scaling's tests, a step to 2,400 requests/s): the
backlog the pods see lags the other processes' admissions and leaves out what the workers
have prefetched, about 2 s in all there, so ~3 % of the refusals come from the workers
after a queue wait instead of at the door (a fifth of the window: 0.04 %) — 503s either
way, none a 504, and the same goodput."""
ADMISSION_MARGIN_SHARE = 0.2
"""The largest share of a window the margin takes: a short window keeps this share (a 3 s
window 0.6 s, the rule before the fixed margin), not ``ADMISSION_MARGIN_S``. A route's
window may be 1 s or less (``timeout_s`` > 0; tests/routes.toml's ``quick`` routes): a
whole second of margin would leave such a route nothing and admission would refuse every
one of its requests, and would take a third of a 3 s login window whose calls take 50 ms.
Short windows are fast routes, where the late refusal catches what the estimate misses in
the same way."""
SATURATED_POLLS = 2
"""Consecutive polls with more messages than worker slots before the measured drain rate
is trusted as the capacity (until then, the workers' potential counts too)."""
POLL_TIMEOUT_S = 3.0
UNMEASURED_FOR_S = 5.0
"""How long a saturated queue with live workers and a drain rate of exactly zero counts as
not measured yet rather than not draining. The first completions of a burst after an idle
spell reach the pods a worker report and a poll later (up to ~2 s, plus one service time);
taking that zero as the capacity refused high requests with "no worker is draining the
queue" while a worker was draining it (seen in the compose priority check). Past this, a
zero is believed: live workers that complete nothing (a hung backend) drain nothing."""


def usable_s(window_s: float) -> float:
    """The part of a ``window_s`` window that a request's predicted wait and service time
    may use: all but ``ADMISSION_MARGIN_S``, and at least ``1 - ADMISSION_MARGIN_SHARE`` of
    it (the constants say why). The admission, its probes and its ``Retry-After`` all
    measure against it, as does the simulator (bench/scaling/admission.py)."""
    return window_s - min(ADMISSION_MARGIN_S, ADMISSION_MARGIN_SHARE * window_s)


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    predicted_wait_s: float
    retry_after_s: int = 0
    service_s: float = 0.0
    """The service time the verdict kept free in the window."""
    probe: bool = False
    """Admitted against the estimate, to measure it again (see the module notes)."""


class BacklogMonitor:
    def __init__(
        self,
        queues: dict[Priority, QueueOps],
        redis: Redis,
        keys: Keys,
        *,
        threshold: int,
        wait_s: float,
        poll_s: float,
        predictive: bool,
    ) -> None:
        self._queues = queues
        self._redis = redis
        self._keys = keys
        self.threshold = threshold
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.predictive = predictive
        self.backlog: dict[Priority, int] = {"high": 0, "normal": 0}
        self._admitted_since_read: dict[Priority, int] = {"high": 0, "normal": 0}
        self.estimate = drain.DrainEstimate()
        self._saturated_polls = 0
        self._busy_since = 0.0
        self._worker_slots = 0
        self._next_probe_at = 0.0
        """Monotonic time from which this pod may let its next probe through."""
        self.last_ok = 0.0
        """Monotonic time of the last successful backlog read (readiness uses it)."""
        self._changed = asyncio.Condition()
        self._background = tasks.TaskSet("admission")
        self._stopping = False

    @property
    def high_backlog(self) -> int:
        return self.backlog["high"]

    @property
    def healthy(self) -> bool:
        return time.monotonic() - self.last_ok < max(3 * self.poll_s, 5.0)

    async def start(self) -> None:
        await self._poll_once()
        self._background.spawn(self._run(), name="backlog-monitor")

    async def stop(self) -> None:
        self._stopping = True
        await self._background.stop()

    # --- the decision ---------------------------------------------------------------

    def drain_rate(self) -> float:
        saturated = self._saturated_polls >= SATURATED_POLLS
        if (
            saturated
            and self.estimate.rate == 0
            and time.monotonic() - self._busy_since < UNMEASURED_FOR_S
        ):
            saturated = False  # no rate measured yet: the workers' potential counts
        return self.estimate.drain_rate(saturated=saturated)

    def predicted_wait_s(self, priority: Priority) -> float:
        """Seconds a request queued now would wait before a worker takes it."""
        ahead = self.backlog["high"] + self._admitted_since_read["high"]
        if priority == "normal":
            ahead += self.backlog["normal"] + self._admitted_since_read["normal"]
        if ahead <= 0:
            return 0.0
        rate = self.drain_rate()
        if rate > 0:
            return ahead / rate
        if self.estimate.live_workers == 0 and self._saturated_polls < SATURATED_POLLS:
            # no worker report yet (a pod or worker just started): refuse only once
            # messages have been seen standing in the queue with nobody draining them
            return 0.0
        return math.inf

    def judge(self, priority: Priority, window_s: float) -> Verdict:
        """Admit now, or refuse with the seconds after which a retry could be admitted."""
        wait = self.predicted_wait_s(priority)
        service = self.estimate.service_s
        if not self.predictive:
            return Verdict(True, wait, service_s=service)
        allowed = usable_s(window_s) - service
        if wait <= allowed:
            return Verdict(True, wait, service_s=service)
        if self._probe(wait, window_s):
            return Verdict(True, wait, service_s=service, probe=True)
        if math.isinf(wait):  # nothing drains the queue (no live worker): check back soon
            return Verdict(False, wait, max(1, math.ceil(self.poll_s)), service)
        retry = max(1, math.ceil(wait - max(allowed, 0.0)))
        if allowed <= 0:  # the service time alone leaves no room: a probe will tell
            retry = max(1, math.ceil(drain.SERVICE_WINDOW_S))
        return Verdict(False, wait, retry, service)

    def _probe(self, wait: float, window_s: float) -> bool:
        """Whether a request the estimate refuses goes through as a probe: the estimate
        rests on old completions, only the service time leaves no room (the queue ahead
        would fit), a worker is there to take it, and this pod's last probe has had its
        window."""
        now = time.monotonic()
        if (
            self.estimate.live_workers == 0
            or wait > usable_s(window_s)
            or now < self._next_probe_at
            or not self.estimate.stale(now)
        ):
            return False
        self._next_probe_at = now + window_s
        metrics.ADMISSION_PROBES.inc()
        log.info(
            "admission probe",
            service_s=round(self.estimate.service_s, 3),
            predicted_wait_s=round(wait, 3),
        )
        return True

    def admitted(self, priority: Priority) -> None:
        """Counts a request this pod queued, until the next backlog read includes it."""
        self._admitted_since_read[priority] += 1

    async def high_backlog_clear(self) -> bool:
        """True at once while the high backlog is under the threshold; else waits up to
        ``wait_s`` for it to drop and returns False if it does not."""
        if self.high_backlog < self.threshold:
            return True
        try:
            async with self._changed:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.high_backlog < self.threshold),
                    self.wait_s,
                )
            return True
        except TimeoutError:
            return False

    # --- the poll ----------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.poll_s)
            await self._poll_once()

    async def _poll_once(self) -> None:
        try:
            async with asyncio.timeout(POLL_TIMEOUT_S):
                high, normal = await asyncio.gather(
                    self._queues["high"].backlog(), self._queues["normal"].backlog()
                )
        except Exception as exc:
            FAILURES.note("backlog read failed", exc)
            return
        await self._read_drain()
        # this read includes what the pod admitted before it (or workers took it already)
        self._admitted_since_read = {"high": 0, "normal": 0}
        busy = high + normal > self._worker_slots
        if busy and self._saturated_polls == 0:
            self._busy_since = time.monotonic()
        self._saturated_polls = self._saturated_polls + 1 if busy else 0
        for priority, queue in self._queues.items():
            metrics.QUEUE_BACKLOG.labels(queue.name).set(high if priority == "high" else normal)
        self.last_ok = time.monotonic()
        async with self._changed:
            self.backlog = {"high": high, "normal": normal}
            self._changed.notify_all()
        metrics.DRAIN_RATE.set(self.drain_rate())
        metrics.ADMISSION_SERVICE_TIME.set(self.estimate.service_s)
        for priority in ("high", "normal"):
            wait = self.predicted_wait_s(priority)
            metrics.ADMISSION_PREDICTED_WAIT.labels(priority).set(min(wait, 1e6))

    async def _read_drain(self) -> None:
        try:
            async with asyncio.timeout(POLL_TIMEOUT_S):
                reports = await drain.read_reports(self._redis, self._keys)
                gone = self.estimate.update(reports, clock.now(), time.monotonic())
                await drain.forget(self._redis, self._keys, gone)
        except Exception as exc:
            FAILURES.note("drain report read failed", exc)
            return
        self._worker_slots = self.estimate.slots
