"""The backend's current service time as this worker sees it, and what it says about a
message: call the backend, or answer at once that its window cannot fit the call.

Why. In a brownout (the backend ten times slower for minutes) a message can reach a slot
with less of its window left than a call now takes. Called anyway, it holds the slot and a
backend slot until its deadline and ends in a 504 the client waited for; refused at once
with a 503, the client knows within its queue wait and the slot goes to a fresher message
(bench/scaling's brownout: 52 instead of 1,062 504s).

The estimate, as ``bench.scaling.workers.WorkerPool.service_estimate_s`` models it, per
route (``RoutePaces``):

- the mean of this worker's backend calls of the route completed in the last
  ``SERVICE_WINDOW_S`` (``queuefront.drain``'s window: the pods' admission and this
  estimate forget at the same pace), the last mean standing after a quiet spell;
- never less than the age of its oldest call of the route in flight: a slowdown shows
  there before its first slow call completes.

Why per route: routes differ in service time and in window (a report that takes 10 s in a
30 s window, a login of 50 ms in a 3 s one). Measured across routes, one slow route's calls
in flight would refuse every fresh login — calls that would have made it. A brownout slows
every route, and each sees it in its own calls. (The simulator's backend has one service
time for every request, so there the two are the same.)

Why not ``queuefront.drain.DrainEstimate`` itself: it dates completions by when a poll
reads a worker's totals, once a second whatever happens. A worker judges only when a
message comes, so fed the same way it would date a slow call that ended before a quiet
spell at the end of the spell — an old slowdown taken for a fresh one. Here each call is
dated when it ends. The staleness rule is the same as ``DrainEstimate.stale``'s.

Nothing measured yet (a cold worker, or a route it has not called since it started) is no
estimate, and never refuses — not even on the age of a call in flight, which a cold worker
cannot tell from one slow call.

Not stuck high. A refused message is not measured, so once the mean says "too slow" only
completions could lower it, and refusing everything would keep it there (admission had
that bug: ``service.admission``'s module notes). So the mean counts only while it is
recent: once it rests on old completions only (``DrainEstimate.stale``), one message that
it alone would refuse is called anyway (a probe; one at a time per worker and route). A recovered
backend answers it at once and the estimate is measured afresh; a slow one costs one call
per spell. The age of the calls in flight is always current and is never probed past.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count

from queuefront.drain import SERVICE_WINDOW_S

REFUSE_MARGIN_S = 0.1
"""Seconds a message's window must hold beyond the estimate to be called: the reply's
way back after the call (stored and published in Redis, passed on by the pod)."""


@dataclass(frozen=True)
class Judgement:
    call: bool
    """Call the backend (False: answer 503 at once)."""
    service_s: float
    """The estimate the judgement rests on (0: none yet)."""
    probe: bool = False
    """Called against a stale estimate, to measure it again (see the module notes)."""


class Pace:
    """One worker's view of the backend's pace (see the module notes)."""

    def __init__(
        self,
        *,
        margin_s: float = REFUSE_MARGIN_S,
        window_s: float = SERVICE_WINDOW_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._margin_s = margin_s
        self._window_s = window_s
        self._monotonic = monotonic
        self._recent: deque[tuple[float, float]] = deque()
        """(end, seconds) of the calls completed in the last ``window_s``."""
        self._recent_s = 0.0
        """Their seconds, summed (kept as they come and go: no sum per message)."""
        self.mean_s = 0.0
        """Mean of the calls in the window; the last one after a quiet spell."""
        self.measured_at: float | None = None
        """End (monotonic) of the last call completed; None: none yet (a cold worker)."""
        self._in_flight: dict[int, float] = {}
        """Start (monotonic) of each backend call in flight, by a token of this object's."""
        self._tokens = count()
        self._probing = False

    def _forget(self, now: float) -> None:
        while self._recent and now - self._recent[0][0] > self._window_s:
            _, seconds = self._recent.popleft()
            self._recent_s -= seconds
        if self._recent:
            self.mean_s = max(0.0, self._recent_s) / len(self._recent)
        else:
            self._recent_s = 0.0  # no rounding left over from the calls that went

    def stale(self, now: float) -> bool:
        """The mean rests on old calls only: none ended for the window and one more mean
        (``DrainEstimate.stale``'s rule)."""
        if self.measured_at is None:
            return True
        return now - self.measured_at > self._window_s + self.mean_s

    def oldest_call_s(self, now: float) -> float:
        return now - min(self._in_flight.values(), default=now)

    def judge(self, seconds_left: float) -> Judgement:
        """Whether a message with ``seconds_left`` of its window is worth a backend call."""
        if self.measured_at is None:
            return Judgement(True, 0.0)  # cold: nothing measured, nothing to go on
        now = self._monotonic()
        self._forget(now)
        oldest = self.oldest_call_s(now)
        estimate = max(self.mean_s, oldest)
        if seconds_left >= estimate + self._margin_s:
            return Judgement(True, estimate)
        if not self._probing and self.stale(now) and seconds_left >= oldest + self._margin_s:
            # only the old mean refuses it: measure the backend again instead of believing it
            self._probing = True
            return Judgement(True, estimate, probe=True)
        return Judgement(False, estimate)

    @contextmanager
    def calling(self, judgement: Judgement) -> Iterator[None]:
        """Holds one backend call in flight; once it ends, its time is measured (whatever
        its answer: a call cut at the deadline says "at least this long")."""
        token = next(self._tokens)
        started = self._in_flight[token] = self._monotonic()
        try:
            yield
        finally:
            del self._in_flight[token]
            if judgement.probe:
                self._probing = False
        end = self._monotonic()  # not on cancellation: a call cut short measures nothing
        self._recent.append((end, end - started))
        self._recent_s += end - started
        self.measured_at = end
        self._forget(end)


class RoutePaces:
    """One ``Pace`` per route, made on the route's first message (the routes are the route
    table's: a message naming another is refused before it gets here)."""

    def __init__(
        self,
        *,
        margin_s: float = REFUSE_MARGIN_S,
        window_s: float = SERVICE_WINDOW_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._margin_s = margin_s
        self._window_s = window_s
        self._monotonic = monotonic
        self._routes: dict[str, Pace] = {}

    def of(self, route: str) -> Pace:
        pace = self._routes.get(route)
        if pace is None:
            pace = self._routes[route] = Pace(
                margin_s=self._margin_s, window_s=self._window_s, monotonic=self._monotonic
            )
        return pace
