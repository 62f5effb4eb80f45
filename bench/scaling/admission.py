"""The api's admission rule, as ``service/admission.py`` applies it — in one place, so a
change there is made here once.

A pod polls the high and normal queues' ``ApproximateNumberOfMessages`` (visible
messages) every ``QF_BACKLOG_POLL_S`` and the workers' drain reports; it admits a queued
request if the predicted wait (messages ahead ÷ drain rate) plus the measured service time
fits in the route's window less admission's margin (``service.admission.usable_s``: all
but ``ADMISSION_MARGIN_S``, at most ``ADMISSION_MARGIN_SHARE`` of it), else answers 503
at once. Normal
requests also wait up to ``QF_ADMISSION_WAIT_S`` while the high backlog is at or above
``QF_ADMISSION_THRESHOLD``. The drain rate is the workers' potential (slots ÷ service
time) until the backlog has exceeded the worker slots for ``SATURATED_POLLS`` polls, then
the measured completion rate. When the estimate rests on old completions only and the
service time alone leaves no room, each process lets one probe through per window. The
estimate is ``queuefront.drain.DrainEstimate`` itself, fed with the simulated workers'
totals (simulated time stands for both the reference and the monotonic clock); the
constants are imported from the service.

All api processes see the same backlog and get equal shares of the requests (the ALB
balances them), so one state stands for all of them; what "this pod admitted since its
last read" counts is per process, which is why N processes together admit up to N times
the room one of them sees.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bench.scaling.model import Priority
from queuefront.drain import DrainEstimate, DrainReport
from service.admission import SATURATED_POLLS, UNMEASURED_FOR_S, usable_s

WORKERS_ID = "workers"
"""The simulated workers report as one: their totals and slots summed."""


class Admission:
    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.threshold = int(settings["admission_threshold"])
        self.wait_s = float(settings["admission_wait_s"])
        self.poll_s = float(settings["backlog_poll_s"])
        self.predictive = bool(settings["admission_predictive"])
        self.margin_s: float | None = None
        """``ModelConstants.admission_margin_s`` (a what-if; None: the product's rule): the
        part of every window kept free, in seconds, whatever the window."""
        self.backlog: dict[Priority, int] = {"high": 0, "normal": 0}
        self.admitted_since: dict[Priority, float] = {"high": 0.0, "normal": 0.0}
        """Per process: admitted since its last backlog read."""
        self.estimate = DrainEstimate()
        self._saturated_polls = 0
        self._busy_since = 0.0
        self._worker_slots = 0
        self._next_probe_at = 0.0
        self.next_poll_s = 0.0

    # --- the poll ---------------------------------------------------------------------------

    def poll(
        self, now: float, high: int, normal: int, slots: int, completed: int, busy_s: float
    ) -> None:
        """One backlog read (``slots`` 0: no live worker reports)."""
        reports = {} if slots == 0 else {WORKERS_ID: DrainReport(now, slots, completed, busy_s)}
        self.estimate.update(reports, now, now)
        self._worker_slots = slots
        self.admitted_since = {"high": 0.0, "normal": 0.0}
        busy = high + normal > self._worker_slots
        if busy and self._saturated_polls == 0:
            self._busy_since = now
        self._saturated_polls = self._saturated_polls + 1 if busy else 0
        self.backlog = {"high": high, "normal": normal}
        self.next_poll_s = now + self.poll_s

    # --- the decision -------------------------------------------------------------------------

    def drain_rate(self, now: float) -> float:
        saturated = self._saturated_polls >= SATURATED_POLLS
        if saturated and self.estimate.rate == 0 and now - self._busy_since < UNMEASURED_FOR_S:
            saturated = False
        return self.estimate.drain_rate(saturated=saturated)

    def ahead(self, priority: Priority) -> float:
        a = self.backlog["high"] + self.admitted_since["high"]
        if priority == "normal":
            a += self.backlog["normal"] + self.admitted_since["normal"]
        return a

    def predicted_wait_s(self, priority: Priority, now: float) -> float:
        """As ``BacklogMonitor.predicted_wait_s``: seconds before a worker takes it."""
        ahead = self.ahead(priority)
        if ahead <= 0:
            return 0.0
        rate = self.drain_rate(now)
        if rate > 0:
            return ahead / rate
        if self.estimate.live_workers == 0 and self._saturated_polls < SATURATED_POLLS:
            return 0.0
        return math.inf

    def room(self, priority: Priority, window_s: float, now: float) -> float:
        """How many more requests of ``priority`` one process admits now: those for which
        ``BacklogMonitor.judge`` would say yes, one after the other."""
        if not self.predictive:
            return math.inf
        room = self._room(priority, window_s, now)
        if room < 1 and self._probe(priority, window_s, now):
            return 1.0
        return room

    def _probe(self, priority: Priority, window_s: float, now: float) -> bool:
        """As ``BacklogMonitor._probe`` (taken as used: one request is always waiting)."""
        if (
            self.estimate.live_workers == 0
            or self.predicted_wait_s(priority, now) > self.usable_s(window_s)
            or now < self._next_probe_at
            or not self.estimate.stale(now)
        ):
            return False
        self._next_probe_at = now + window_s
        return True

    def usable_s(self, window_s: float) -> float:
        """The part of a window the predicted wait and the service time may use."""
        if self.margin_s is None:
            return usable_s(window_s)
        return max(0.0, window_s - self.margin_s)

    def _room(self, priority: Priority, window_s: float, now: float) -> float:
        allowed = self.usable_s(window_s) - self.estimate.service_s
        if allowed < 0:
            return 0.0
        ahead = self.ahead(priority)
        rate = self.drain_rate(now)
        if math.isinf(rate):
            return math.inf
        if rate > 0:
            return max(0.0, math.floor(allowed * rate - ahead) + 1)
        if self.estimate.live_workers == 0 and self._saturated_polls < SATURATED_POLLS:
            return math.inf  # no worker report yet, no standing backlog: nothing to refuse on
        return 1.0 if ahead <= 0 else 0.0  # nothing drains: only a request with none ahead

    def admit(self, priority: Priority, per_process: float) -> None:
        self.admitted_since[priority] += per_process

    def high_backlog_blocks(self) -> bool:
        """A normal request must wait for the high backlog to drop (QF_ADMISSION_THRESHOLD)."""
        return self.backlog["high"] >= self.threshold
