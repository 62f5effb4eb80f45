"""The high and normal queues, the priority workers and the legacy backend.

Between two simulation steps this is event-driven: a call ends at its own time, the slot
it frees takes the next message at that moment, so a 1.6 s call in 1 s steps keeps its
slot exactly 1.6 s. What the workers do follows ``workers/priority/loop.py``:

- strict priority: a free slot takes the oldest available high message; normal messages
  only while no high one is available;
- a message whose window has passed is deleted without calling the backend (the client
  already has its 504), which costs no slot time;
- a message whose remaining window is shorter than the backend's current service time as
  the workers see it (``workers/priority/pace.py``) is answered 503 at once, without a
  call (``QF_WORKER_REFUSE_LATE``, on by default; ``[model] worker_refuses_late`` sets it
  for a run);
- each task holds ``QF_WORKER_CONCURRENCY`` calls and prefetches up to
  ``PREFETCH_PER_RECEIVER`` per receive loop (those are in flight for SQS's metrics but
  wait no longer: a prefetched message starts as soon as a slot frees);
- all tasks together hold at most ``QF_BACKEND_MAX_CONCURRENCY`` calls (a lease in Redis
  per call, ``workers/priority/lease.py``; 0: no shared limit): a slot takes a message only
  while a lease is free, so a message waiting for one is still in the queue (or
  prefetched) and is judged when it starts, as the product judges it after its lease;
- a worker's CPU per message (the measured figure) caps how many calls it can start.

The backend serves ``slots`` calls at once; more wait in its own line, still holding
their worker slots. In collapse mode, a call that starts being served takes
``examples.legacy_backend.service_time_s`` of the calls in flight — the demo backend's own
rule, imported rather than copied.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque

from bench.scaling.model import Batch, Cohort, Priority
from bench.scaling.scenario import Backend
from examples.legacy_backend import service_time_s
from queuefront.drain import SERVICE_WINDOW_S
from workers.priority.loop import (
    MAX_RECEIVERS_PER_QUEUE,
    PREFETCH_PER_RECEIVER,
    RECEIVERS_PER_SLOTS,
)
from workers.priority.pace import MIN_EVIDENCE, REFUSE_MARGIN_S, REFUSE_SHARE

PRIORITIES: tuple[Priority, ...] = ("high", "normal")
SPREAD_GROUPS = 5
"""Service times spread over this many groups (the middles of five equal slices of
± ``spread``); calls take them in turn, whether they start alone or together."""


def receivers_per_queue(concurrency: int) -> int:
    """Receive loops a worker task runs per queue (workers/priority/loop.py)."""
    return max(1, min(MAX_RECEIVERS_PER_QUEUE, concurrency // RECEIVERS_PER_SLOTS))


def prefetch_per_task(concurrency: int) -> int:
    """Messages one worker task receives ahead of its free slots (workers/priority/loop.py)."""
    return min(concurrency, PREFETCH_PER_RECEIVER * receivers_per_queue(concurrency))


class MessageQueue:
    """One SQS queue of proxied requests, oldest first."""

    def __init__(self, name: Priority) -> None:
        self.name = name
        self.entries: deque[Batch] = deque()
        self.length = 0
        """Messages in the queue, the expired ones included (SQS still holds them)."""
        self.max_length = 0
        self.max_oldest_age_s = 0.0

    def push(self, cohort: Cohort, n: int, receivable_at: float) -> None:
        if n > 0:
            self.entries.append(Batch(cohort, n, receivable_at))
            self.length += n
            self.max_length = max(self.max_length, self.length)

    def oldest_age_s(self, now: float) -> float:
        if not self.entries:
            return 0.0
        return max(0.0, now - self.entries[0].cohort.arrived)


class WorkerPool:
    """All worker tasks of the service together, and the backend they call."""

    def __init__(
        self, backend: Backend, concurrency: int, spread: float = 0.0, shared_limit: int = 0
    ) -> None:
        self.backend = backend
        self.spread = spread
        self.concurrency = concurrency
        self.shared_limit = shared_limit
        """``QF_BACKEND_MAX_CONCURRENCY``: calls all tasks together hold (0: no limit)."""
        self.queues = {p: MessageQueue(p) for p in PRIORITIES}
        self.tasks = 0
        self.cpu_s_per_message = 0.0
        self.cpu_per_task = 1.0
        self._in_service: list[tuple[float, int, Cohort, int, float]] = []
        """(end, seq, cohort, calls, taken_at): calls the backend serves."""
        self._waiting: deque[Batch] = deque()
        """Calls a worker holds (taken at ``at``), waiting for a backend slot."""
        self._seq = 0
        self._next_group = 0
        """The spread group the next call started takes (they take them in turn)."""
        self.serving = 0
        """Calls the backend is serving."""
        self.waiting = 0
        """Calls held by workers, waiting for a backend slot."""
        self.completed = 0
        """Messages completed (a reply published, in time or not): the drain reports."""
        self.busy_s = 0.0
        """Seconds those completions took, summed (the drain reports' busy time)."""
        self.expired_deleted = 0
        self.late_calls = 0
        """Backend calls whose client had already timed out when they ended."""
        self.completions: list[tuple[Cohort, int, float]] = []
        """(cohort, n, end) of replies published this step, for the simulator."""
        self._cpu_left = 0.0
        self.refuse_late = False
        """What workers/priority/pace.py does (``QF_WORKER_REFUSE_LATE``; the simulator sets
        it from the worker's settings or ``ModelConstants.worker_refuses_late``): a worker
        that takes a message whose remaining window is shorter than the backend's current
        service time as the worker sees it (:meth:`service_estimate_s`) plus
        ``REFUSE_MARGIN_S`` answers it with a 503 at once instead of calling the backend
        into a 504. The product judges on counts of calls that would not fit (at least
        ``MIN_EVIDENCE``, and at least ``REFUSE_SHARE`` of its calls), so that one call
        that ran long refuses nothing; the estimate here is the duration those counts
        turn at, so the two agree for the pool's calls taken together."""
        self.refusals: list[tuple[Cohort, int, float]] = []
        """(cohort, n, at) of messages refused that way this step."""
        self.refused_late = 0
        self.refused_stale = 0
        """Of those, refused while the estimate rested on old completions only (none for
        ``SERVICE_WINDOW_S`` and one service time). The product never refuses on calls
        older than its window (workers/priority/pace.py), so this counts where the model
        would differ (none in the shipped scenarios: completions never stop while messages
        are refused)."""
        self._last_end: float | None = None
        """End of the last call completed; None: none yet (cold workers never refuse)."""
        self._recent: deque[tuple[float, int, float]] = deque()
        """(end, calls, seconds each) of the calls completed in the last SERVICE_WINDOW_S."""
        self._by_duration: list[tuple[float, int]] = []
        """(seconds each, calls) of ``_recent``, shortest first: the quantile reads the top."""
        self._recent_calls = 0
        self._recent_added = 0
        self._recent_dropped = 0
        self._judged_evidence: tuple[int, int] | None = None
        """(added, dropped) of ``_recent`` when it was last judged (``_judge_recent``)."""
        self._judged_flight: tuple[float, int, int] | None = None
        self._oldest_s = 0.0
        """Age of the oldest call in service, as of ``_judged_flight`` (time, pushes, size)."""
        self._last_service_s = 0.0

    # --- capacity ------------------------------------------------------------------------

    @property
    def slots(self) -> int:
        """Calls the tasks can hold at once: their slots, within the shared limit."""
        own = self.tasks * self.concurrency
        return min(own, self.shared_limit) if self.shared_limit > 0 else own

    @property
    def held(self) -> int:
        return self.serving + self.waiting

    def prefetched(self) -> dict[Priority, int]:
        """Messages received ahead of free slots (in flight for SQS), high first."""
        room = self.tasks * prefetch_per_task(self.concurrency)
        out: dict[Priority, int] = {}
        for p in PRIORITIES:
            out[p] = min(self.queues[p].length, room)
            room -= out[p]
        return out

    def visible(self, p: Priority) -> int:
        return self.queues[p].length - self.prefetched()[p]

    def not_visible(self, p: Priority) -> int:
        """In flight: received and not deleted (prefetched, waiting, being served)."""
        held = sum(n for _, _, c, n, _ in self._in_service if c.priority == p)
        held += sum(b.n for b in self._waiting if b.cohort.priority == p)
        return held + self.prefetched()[p]

    # --- the step --------------------------------------------------------------------------

    def service_estimate_s(self, t: float) -> float:
        """The backend's service time as a worker judges it at ``t``: the duration that
        ``REFUSE_SHARE`` of the calls completed in the last ``SERVICE_WINDOW_S`` reach
        (weighted by their counts: about the 90th percentile; at least ``MIN_EVIDENCE``
        calls), the last such after a quiet spell, and never less than the age of the
        oldest call still in service — which is how a slowdown shows before its first
        slow call completes. A message whose remaining window is shorter is refused: as
        workers/priority/pace.py refuses when at least that share of the calls would not
        fit. Erring long costs little: a message refused at once takes no slot, which goes
        to a fresher one. (Tried in the brownout: the mean alone, or the oldest age only
        until a call that long completes, left two to three times as many 504s and less
        goodput; the median — the product's first rule, which the mean stood for — left
        the calls slower than it to end in 504s: 84, against 45 with the 90th
        percentile.) For the pool as a whole
        (the product keeps one per route; here every call has the backend's one service
        time): a task started during a run shares it, where a real one starts cold."""
        while self._recent and self._recent[0][0] < t - SERVICE_WINDOW_S:
            _, n, d = self._recent.popleft()
            del self._by_duration[bisect.bisect_left(self._by_duration, (d, n))]
            self._recent_calls -= n
            self._recent_dropped += 1
        # a slot judges many messages at one time: the same evidence, judged once
        evidence = (self._recent_added, self._recent_dropped)
        if evidence != self._judged_evidence:
            self._judged_evidence = evidence
            self._judge_recent()
        flight = (t, self._seq, len(self._in_service))
        if flight != self._judged_flight:
            self._judged_flight = flight
            self._oldest_s = max((t - taken for _, _, _, _, taken in self._in_service), default=0.0)
        return max(self._last_service_s, self._oldest_s)

    def _judge_recent(self) -> None:
        """``REFUSE_SHARE``'s duration of the recent calls (``service_estimate_s``)."""
        if self._recent:
            need = max(MIN_EVIDENCE, REFUSE_SHARE * self._recent_calls)
            above = 0
            # the longest first, until enough say "this long"
            for seconds, n in reversed(self._by_duration):
                above += n
                if above >= need:
                    self._last_service_s = seconds
                    break
            else:
                self._last_service_s = 0.0  # too few calls to be evidence

    @property
    def _last_end_s(self) -> float:
        return -math.inf if self._last_end is None else self._last_end

    def _refuses(self, seconds_left: float, t: float) -> bool:
        """workers/priority/pace.py's judgement, as the cohorts see it (``refused_stale``
        counts where the two could differ)."""
        if not self.refuse_late or self._last_end is None:
            return False  # off, or cold: nothing measured yet
        return seconds_left < self.service_estimate_s(t) + REFUSE_MARGIN_S

    def run(self, t0: float, t1: float) -> None:
        """Serves from t0 to t1: completions at their times, new calls as slots free."""
        self.completions = []
        self.refusals = []
        self._cpu_left = (
            self.tasks * self.cpu_per_task * (t1 - t0) / max(self.cpu_s_per_message, 1e-9)
        )
        t = t0
        while True:
            self._start(t)
            nxt = t1
            if self._in_service:
                nxt = min(nxt, self._in_service[0][0])
            if self.held < self.slots and self._cpu_left >= 1:
                for q in self.queues.values():
                    if q.entries and q.entries[0].at > t:
                        nxt = min(nxt, q.entries[0].at)
            if nxt >= t1:
                return
            t = nxt
            self._complete(t)

    def _start(self, t: float) -> None:
        free = self.slots - self.held
        for p in PRIORITIES:
            q = self.queues[p]
            while free > 0 and q.entries:
                batch = q.entries[0]
                if batch.at > t:
                    break
                cohort, n = batch.cohort, batch.n
                if cohort.expired or t >= cohort.deadline:
                    q.entries.popleft()  # deleted unanswered: no backend call
                    q.length -= n
                    self.expired_deleted += n
                    continue
                if self._refuses(cohort.deadline - t, t):
                    q.entries.popleft()  # a fast 503 instead of a call into a 504
                    q.length -= n
                    self.refused_late += n
                    if t - self._last_end_s > SERVICE_WINDOW_S + self._last_service_s:
                        self.refused_stale += n
                    self.refusals.append((cohort, n, t))
                    continue
                k = min(n, free, int(self._cpu_left))
                if k <= 0:
                    return
                batch.n = n - k
                if n == k:
                    q.entries.popleft()
                q.length -= k
                free -= k
                self._cpu_left -= k
                self._waiting.append(Batch(cohort, k, t))
                self.waiting += k
            if free <= 0:
                break
        self._serve(t)

    def _serve(self, t: float) -> None:
        """Starts what waits for the backend while it has free slots."""
        while self._waiting and self.serving < self.backend.slots:
            batch = self._waiting[0]
            k = min(batch.n, self.backend.slots - self.serving)
            batch.n -= k
            if batch.n == 0:
                self._waiting.popleft()
            self.waiting -= k
            self.serving += k
            base = self.backend.service_at(t)
            in_flight = self.serving + self.waiting
            service = (
                service_time_s(base, in_flight, self.backend.knee)
                if self.backend.collapse
                else base
            )
            groups = SPREAD_GROUPS if self.spread > 0 else 1
            first = self._next_group % groups
            self._next_group = first + k
            for i in range(min(k, groups)):
                g = (first + i) % groups
                calls = k // groups + (1 if i < k % groups else 0)
                factor = 1.0 + self.spread * ((2 * g + 1) / groups - 1)
                self._seq += 1
                heapq.heappush(
                    self._in_service,
                    (t + service * factor, self._seq, batch.cohort, calls, batch.at),
                )

    def _complete(self, t: float) -> None:
        while self._in_service and self._in_service[0][0] <= t:
            end, _, cohort, n, taken = heapq.heappop(self._in_service)
            self.serving -= n
            self.completed += n
            self.busy_s += n * (end - taken)
            self.completions.append((cohort, n, end))
            self._recent.append((end, n, end - taken))
            bisect.insort(self._by_duration, (end - taken, n))
            self._recent_calls += n
            self._recent_added += 1
            self._last_end = end
        self._serve(t)

    def utilisation(self) -> float:
        return self.held / self.slots if self.slots else math.nan
