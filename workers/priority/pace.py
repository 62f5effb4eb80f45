"""The backend's current service time as this worker sees it, and what it says about a
message: call the backend, or answer at once that its window cannot fit the call.

Why. In a brownout (the backend ten times slower for minutes) a message can reach a slot
with less of its window left than a call now takes. Called anyway, it holds the slot and a
backend slot until its deadline and ends in a 504 the client waited for; refused at once
with a 503, the client knows within its queue wait and the slot goes to a fresher message
(bench/scaling's brownout: 52 instead of 1,062 504s).

The evidence, per route (``RoutePaces``): this worker's backend calls of the route that
completed in the last ``SERVICE_WINDOW_S`` (``queuefront.drain``'s window: the pods'
admission and this judgement forget at the same pace; the newest ``RECENT_CALLS_MAX``),
each with its duration, and its calls of the route still running, each with its age — "at
least this long". From both, ``workers.priority.survival`` estimates the share of calls
longer than what is left of a message's window (less ``REFUSE_MARGIN_S``); how long the
calls still running could go on it reads off the route's memory (its last
``RECENT_CALLS_MAX`` calls, however old). The message is refused when that share is at
least ``REFUSE_SHARE`` and makes at least ``MIN_EVIDENCE`` of the evidence's calls, and at
least ``MIN_EVIDENCE`` calls could outlast its window.

Why the calls still running count. Right after a slowdown the calls that have ended are
the fastest of the slow ones; the slower calls that started with them still run. Judged on
the calls that ended (this module's rule until then: at least ``MIN_EVIDENCE`` and
``REFUSE_SHARE`` of them longer than the budget), messages with a few seconds less than the
slowest call were called into 504s, for as long as one call lasts after every gap in the
calls started (bench/scaling's brownout: 81 504s; with the estimate, none).

Why a high share, not the median. Calls vary: in a brownout that makes the backend's
calls 12-20 s in a 20 s window, a message with 17 s left fits the median call, and the
first rule (refuse only when the calls that would not fit outnumber those that would)
called it — and the calls above the median ended in 504s, each holding a worker slot and
a backend slot to the deadline. A refusal costs the client a retry with a fresh window; a
call that runs into the deadline costs it the whole window and a 504, and costs the slots
another message could have used.

Why counts, not a mean. The first version refused on the mean of the window and the age of
the oldest call in flight. One call that ran into its window — a request that asked the
demo backend for 25 s, a report that hung — then made the route's mean 20 s, and the
worker refused every fresh message of the route for as long as that mean stood: calls
that would have made it (the compose restart test saw exactly that). One slow call is no
evidence about the next; several, with nothing faster beside them, are.

Why per route: routes differ in service time and in window (a report that takes 10 s in a
30 s window, a login of 50 ms in a 3 s one). Measured across routes, one slow route's calls
in flight would refuse every fresh login — calls that would have made it. A brownout slows
every route, and each sees it in its own calls. (The simulator's backend has one service
time for every request, so there the two are the same.)

Why not ``queuefront.drain.DrainEstimate`` itself: it dates completions by when a poll
reads a worker's totals, once a second whatever happens. A worker judges only when a
message comes, so fed the same way it would date a slow call that ended before a quiet
spell at the end of the spell — an old slowdown taken for a fresh one. Here each call is
dated when it ends.

Nothing completed yet (a cold worker, or a route it has not called since it started) never
refuses — not even on the age of calls in flight, which a cold worker cannot tell from slow
calls of a backend that is only starting. Until its memory is full, calls running past every
call it remembers are only the rest of its first wave: they refuse what they outlast, and no
longer window.

Never stuck. A refused message is not measured, so a judgement that rested on anything
older than the window could keep refusing after the backend recovered (admission had that
bug: ``service.admission``'s module notes). Here all evidence is current: a completed call
counts for ``SERVICE_WINDOW_S`` after its end, a call in flight while it runs; the memory
only says how long calls that are running now may go on. Once the slow calls have ended and
left the window, nothing says "too slow" and messages are called again.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from statistics import median

from queuefront.drain import SERVICE_WINDOW_S
from workers.priority.survival import Observation, refuse_below, stretch

REFUSE_MARGIN_S = 0.1
"""Seconds a message's window must hold beyond a call to be called: the reply's way back
after the call (stored and published in Redis, passed on by the pod)."""
RECENT_CALLS_MAX = 64
"""Completed calls kept as evidence (the newest, within the window): a message is judged on
each of them, so a busy worker (thousands of calls in 5 s) would otherwise spend more on
judging than on the call; 64 recent calls say as much about the backend's pace."""
MIN_EVIDENCE = 2
"""Calls of the evidence (completed in the window, or in flight) that the estimated share
must make before a message is refused: one call that ran long says nothing about the
next."""
REFUSE_SHARE = 0.1
"""Estimated share of the route's calls that would not fit before a message is refused: its
window must hold about the 90th percentile of the calls. A called message then ends in a
504 less than one time in ten, if the next call is like the recent ones. Lower, a route's
ordinary tail (one slow call in 20 or 30) would refuse its late messages although nearly
every call fits; the median (the first rule) called messages that the slower half of the
calls could not answer. With 20 calls of evidence or fewer, ``MIN_EVIDENCE`` (2) of them
is the larger share, which still keeps a single slow call, however few calls beside it,
from refusing anything."""


@dataclass(frozen=True)
class Judgement:
    call: bool
    """Call the backend (False: answer 503 at once)."""
    service_s: float
    """What the judgement rests on: the window a call needs now (refused; the oldest call's
    age when their spread is unbounded), or the median of the calls completed in
    the window (called; 0: none)."""


class Pace:
    """One worker's view of the backend's pace on one route (see the module notes)."""

    def __init__(
        self,
        *,
        margin_s: float = REFUSE_MARGIN_S,
        window_s: float = SERVICE_WINDOW_S,
        min_evidence: int = MIN_EVIDENCE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._margin_s = margin_s
        self._window_s = window_s
        self._min_evidence = min_evidence
        self._monotonic = monotonic
        self._recent: deque[tuple[float, float]] = deque(maxlen=RECENT_CALLS_MAX)
        """(end, seconds) of the newest calls completed in the last ``window_s``."""
        self._remembered: deque[float] = deque(maxlen=RECENT_CALLS_MAX)
        """Durations of the newest calls completed, however old: the tail past the evidence
        (``workers.priority.survival``)."""
        self.measured_at: float | None = None
        """End (monotonic) of the last call completed; None: none yet (a cold worker)."""
        self._in_flight: dict[int, float] = {}
        """Start (monotonic) of each backend call in flight, by a token of this object's."""
        self._tokens = count()
        self._stretch_s = 1.0
        self._stretch_at: float | None = None

    def _forget(self, now: float) -> None:
        while self._recent and now - self._recent[0][0] > self._window_s:
            self._recent.popleft()

    def judge(self, seconds_left: float) -> Judgement:
        """Whether a message with ``seconds_left`` of its window is worth a backend call."""
        if self.measured_at is None:
            return Judgement(True, 0.0)  # cold: nothing measured, nothing to go on
        now = self._monotonic()
        self._forget(now)
        budget = seconds_left - self._margin_s
        if budget >= self._bound_s(now):  # surely fits: the estimate cannot ask for more
            return self._called()
        threshold = refuse_below(
            self._evidence(now),
            self._remembered,
            share=REFUSE_SHARE,
            min_evidence=self._min_evidence,
            remember=RECENT_CALLS_MAX,
        )
        if budget < threshold:
            if math.isinf(threshold):  # unbounded: the oldest call says "at least"
                threshold = max(now - start for start in self._in_flight.values())
            return Judgement(False, threshold)
        return self._called()

    def _called(self) -> Judgement:
        durations = [seconds for _, seconds in self._recent]
        return Judgement(True, median(durations) if durations else 0.0)

    def _bound_s(self, now: float) -> float:
        """A window at least as long as any the estimate can ask for: the longest call
        completed in the window or remembered, or the oldest running stretched by the
        route's spread (``workers.priority.survival``). Most messages have windows far
        longer than the route's calls and skip the estimate (~0.1-0.2 ms)."""
        oldest = now - min(self._in_flight.values(), default=now)
        remembered = max(self._remembered, default=0.0)
        ended = max((s for _, s in self._recent), default=0.0)
        return max(remembered, ended, oldest * self._stretch())

    def _stretch(self) -> float:
        """The memory's spread once it is full (1 before), kept until the next call ends."""
        if self._stretch_at != self.measured_at:
            tail = sorted(self._remembered)
            self._stretch_s = stretch(tail, REFUSE_SHARE, RECENT_CALLS_MAX)
            self._stretch_at = self.measured_at
        return self._stretch_s

    def _evidence(self, now: float) -> list[Observation]:
        """The calls that ran at some time in the window: those that ended in it, those
        still running. The window begins ``window_s`` ago, or at the oldest call kept if
        ``RECENT_CALLS_MAX`` pushed older ones out (they are not in the evidence)."""
        begun = now - self._window_s
        if len(self._recent) == self._recent.maxlen:
            begun = max(begun, self._recent[0][0])
        out = [
            Observation(seconds, max(0.0, begun - (end - seconds)), ended=True)
            for end, seconds in self._recent
        ]
        out += [
            Observation(now - start, max(0.0, begun - start), ended=False)
            for start in self._in_flight.values()
        ]
        return out

    @contextmanager
    def calling(self) -> Iterator[None]:
        """Holds one backend call in flight; once it ends, its time is measured (whatever
        its answer: a call cut at the deadline says "at least this long")."""
        token = next(self._tokens)
        started = self._in_flight[token] = self._monotonic()
        try:
            yield
        finally:
            del self._in_flight[token]
        end = self._monotonic()  # not on cancellation: a call cut short measures nothing
        self._recent.append((end, end - started))
        self._remembered.append(end - started)
        self.measured_at = end
        self._forget(end)


class RoutePaces:
    """One ``Pace`` per route, made on the route's first message (the routes are the route
    table's: a message naming another is refused before it gets here)."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._routes: dict[str, Pace] = {}

    def of(self, route: str) -> Pace:
        pace = self._routes.get(route)
        if pace is None:
            pace = self._routes[route] = Pace(monotonic=self._monotonic)
        return pace
