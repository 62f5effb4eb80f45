"""The high and normal queues, the priority workers and the legacy backend.

Between two simulation steps this is event-driven: a call ends at its own time, the slot
it frees takes the next message at that moment, so a 1.6 s call in 1 s steps keeps its
slot exactly 1.6 s. What the workers do follows ``workers/priority/loop.py``:

- strict priority: a free slot takes the oldest available high message; normal messages
  only while no high one is available;
- a message whose window has passed is deleted without calling the backend (the client
  already has its 504), which costs no slot time;
- a message whose remaining window a call would not fit, as the workers judge it from the
  calls that ended and those still running (``workers/priority/pace.py``, with the
  product's own estimate, ``workers/priority/survival.py``), is answered 503 at once,
  without a call (``QF_WORKER_REFUSE_LATE``, on by default; ``[model] worker_refuses_late`` sets it
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
from collections import Counter, deque

from bench.scaling.model import Batch, Cohort, Priority
from bench.scaling.scenario import Backend
from examples.legacy_backend import service_time_s
from queuefront.drain import SERVICE_WINDOW_S
from workers.priority.loop import (
    MAX_RECEIVERS_PER_QUEUE,
    PREFETCH_PER_RECEIVER,
    RECEIVERS_PER_SLOTS,
)
from workers.priority.pace import MIN_EVIDENCE, RECENT_CALLS_MAX, REFUSE_MARGIN_S, REFUSE_SHARE
from workers.priority.survival import Observation, refuse_below, stretch

PRIORITIES: tuple[Priority, ...] = ("high", "normal")
JUDGED_EVERY_S = 0.01
"""The workers' judgement is computed again at most this often (10 ms: a tenth of the
reply's margin, ``REFUSE_MARGIN_S``, so a judgement that lags by it still leaves the call
its window); computed on every event, the overload tests took four times as long."""
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
        window the worker's estimate asks for (:meth:`service_estimate_s`) plus
        ``REFUSE_MARGIN_S`` answers it with a 503 at once instead of calling the backend
        into a 504. The estimate is the product's own (``workers.priority.survival``), on
        the pool's calls taken together."""
        self.refusals: list[tuple[Cohort, int, float]] = []
        """(cohort, n, at) of messages refused that way this step."""
        self.refused_late = 0
        self._last_end: float | None = None
        """End of the last call completed; None: none yet (cold workers never refuse)."""
        self._recent: deque[tuple[float, int, float]] = deque()
        """(end, calls, seconds each) of the calls completed in the last SERVICE_WINDOW_S."""
        self._longest_recent: list[float] = []
        """Durations of ``_recent``, shortest first: the longest bounds the estimate."""
        self._remembered: deque[float] = deque()
        """Durations of the newest calls completed, however old: ``RECENT_CALLS_MAX`` per
        task, as each worker remembers its own (workers/priority/pace.py)."""
        self._judged: float | None = None
        """When the evidence was last judged."""
        self._completions_seen = 0
        self._dropped = 0
        self._threshold_s = 0.0
        """What the evidence said when last judged: messages with less left are refused."""
        self._stretch = 1.0
        self._remembered_max = 0.0
        self._stretch_at = -1
        """``_completions_seen`` when the memory's spread and longest were last read."""
        self._ages = (0.0, 0.0)
        self._ages_at: tuple[float, int, int, int] | None = None

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
        """The window a message needs at ``t`` to be called, as a worker judges it:
        ``workers.priority.survival.refuse_below`` on the calls completed in the last
        ``SERVICE_WINDOW_S`` and the calls in flight (each "at least its age"), with the
        newest ``RECENT_CALLS_MAX`` completed calls as the route's memory — the product's
        own estimate, imported rather than copied. A message whose remaining window (less
        ``REFUSE_MARGIN_S``) is shorter is refused. For the pool as a whole (the product
        keeps one per route and per worker; here every call has the backend's one service
        time): a task started during a run shares it, where a real one starts cold."""
        while self._recent and self._recent[0][0] < t - SERVICE_WINDOW_S:
            _, _, d = self._recent.popleft()
            del self._longest_recent[bisect.bisect_left(self._longest_recent, d)]
            self._dropped += 1
        # judged at most once per JUDGED_EVERY_S: a slot judges many messages at one time,
        # and a busy pool frees slots thousands of times a second
        if self._judged is None or t - self._judged >= JUDGED_EVERY_S:
            self._judged = t
            self._threshold_s = refuse_below(
                self._evidence(t),
                self._remembered,
                share=REFUSE_SHARE,
                min_evidence=MIN_EVIDENCE,
                remember=self._remember,
            )
        return self._threshold_s

    @property
    def _remember(self) -> int:
        """Calls the tasks remember: ``RECENT_CALLS_MAX`` each."""
        return RECENT_CALLS_MAX * max(1, self.tasks)

    def _evidence(self, t: float) -> list[Observation]:
        """The pool's calls as the estimate's observations, alike ones counted together
        (most calls that ended in the window share one of the spread's durations and
        started within it: a thousand batches are a few observations)."""
        begun = t - SERVICE_WINDOW_S
        calls: Counter[tuple[float, float, bool]] = Counter()
        for end, n, d in self._recent:
            calls[d, max(0.0, begun - (end - d)), True] += n
        for _, _, _, n, taken in self._in_service:
            calls[t - taken, max(0.0, begun - taken), False] += n
        for b in self._waiting:
            calls[t - b.at, max(0.0, begun - b.at), False] += b.n
        return [Observation(s, e, ended, n) for (s, e, ended), n in calls.items()]

    def _running_ages(self, t: float) -> tuple[float, float]:
        """The ages of the oldest and the second oldest call running (0: none)."""
        key = (t, self._seq, len(self._in_service), len(self._waiting))
        if key != self._ages_at:
            started = [(taken, n) for _, _, _, n, taken in self._in_service]
            started += [(b.at, b.n) for b in self._waiting]
            ages = [t - taken for taken, n in heapq.nsmallest(2, started) for _ in range(min(n, 2))]
            ages += [0.0, 0.0]
            self._ages = (ages[0], ages[1])
            self._ages_at = key
        return self._ages

    def _floor_s(self, t: float) -> float:
        """A window no longer than any the estimate can ask for: the shortest call ended
        in the window (the estimate's share is whole below it) and the second oldest call
        running (two calls could outlast less). Lets the judgement of a message that
        surely does not fit skip the estimate (the queue of an overload, expiring)."""
        second = self._running_ages(t)[1]
        if second <= 0.0:
            return 0.0
        shortest = self._longest_recent[0] if self._longest_recent else math.inf
        return min(shortest, second)

    def _bound_s(self, t: float) -> float:
        """A window at least as long as any the estimate can ask for (the longest call
        ended or remembered, the oldest running stretched by the memory's spread): lets
        the judgement of a message that surely fits skip the estimate (a fresh message in
        a run without a slowdown)."""
        oldest = self._running_ages(t)[0]
        if self._stretch_at != self._completions_seen:
            memory = sorted(self._remembered)
            self._stretch = stretch(memory, REFUSE_SHARE, self._remember)
            self._remembered_max = memory[-1] if memory else 0.0
            self._stretch_at = self._completions_seen
        ended = self._longest_recent[-1] if self._longest_recent else 0.0
        return max(self._remembered_max, ended, oldest * self._stretch)

    def _refuses(self, seconds_left: float, t: float) -> bool:
        """workers/priority/pace.py's judgement, as the cohorts see it: the bounds first,
        the estimate only between them."""
        if not self.refuse_late or self._last_end is None:
            return False  # off, or cold: nothing measured yet
        budget = seconds_left - REFUSE_MARGIN_S
        if budget >= self._bound_s(t):
            return False
        if budget < self._floor_s(t):
            return True
        return budget < self.service_estimate_s(t)

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
            bisect.insort(self._longest_recent, end - taken)
            keep = self._remember
            self._remembered.extend([end - taken] * min(n, keep))
            while len(self._remembered) > keep:
                self._remembered.popleft()
            self._completions_seen += 1
            self._last_end = end
        self._serve(t)

    def utilisation(self) -> float:
        return self.held / self.slots if self.slots else math.nan
