"""How long the backend's next call may take, read from the calls that ended *and* the calls
still running: the Kaplan-Meier estimate of the share of calls longer than a budget.

Why not only the calls that ended. Right after a slowdown, the calls that have ended are the
fastest of the slow ones: a call that started with a hundred others and took 12.8 s ends
first, while the 16 s and 19 s calls of the same moment still run. Judged on the calls that
ended, a message with 14 s left looks safe; its own call then takes 19 s and ends in a 504.
The calls still running are evidence too — each says "at least this long" — and leaving
them out makes every estimate too short until the slow calls have all ended (bench/scaling's
brownout: 81 504s, all of them calls judged on such an under-read; with this estimate, 0).

The estimate. Each call in the evidence is an observation: its duration if it ended, its
age if it still runs (a censored duration). The evidence holds the calls that ended in the
last window and the calls running now — the calls that were running at some time in the
window. A call that started before the window entered it at the age it had then (it would
not be there had it ended sooner: left truncation), so it counts from that age on. The
share of calls longer than ``b`` is the product, over the durations ``u <= b`` at which
calls ended, of ``1 - ended(u) / running(u)``, where ``running(u)`` is the calls of the
evidence that had reached age ``u`` (ended at ``u`` or later, or still running past it).

Past the calls that ended, the estimate says nothing about the calls still running: if
the share is still ``share`` or more there, no budget is known to hold them. What bounds
it is how long they *could* go on. A call running for ``a`` seconds may go on as long as
the route's memory says — its last completed calls, however old: the 90th percentile of
those that lasted longer than ``a``, if they are at least a tenth of the memory. Past the
route's slowest tenth (the first seconds of a slowdown, before its first slow call
completes) it is taken to vary as the remembered calls did, stretched to its age: a
slowdown stretches every call alike, so ``a`` times the memory's spread (its 90th over its
10th percentile). The few remembered calls longer still are odd ones — a request that
asked the backend for 20 s — and say nothing about the calls running (read as their tail,
they refused every window of a 300 ms route for 20 s: the compose restart test). A memory
is one only once it is full: a worker that has just started, whose first calls all started
together, remembers only the fastest of them while the others still run — not a slowdown,
only the rest of the same wave. Until then a call running may go on no longer than its age.

A message is refused when that share is at least ``share`` and, applied to the calls of the
evidence, makes at least ``min_evidence`` of them — and while at least ``min_evidence``
calls could outlast its window: calls that ended longer, and calls running that could go
on longer. One call that ran long or hung, however few calls beside it, refuses nothing:
the estimate alone carries the share of calls running young up to the next call that
ended, and when that is a lone request that asked the backend for 25 s, it refused every
window of a 300 ms route.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from itertools import accumulate
from typing import NamedTuple


def spread(durations: Sequence[float], share: float) -> float:
    """How much longer the route's slow calls are than its fast ones: the ratio of the
    durations that ``share`` of the calls exceed and that ``share`` stay below (the 90th
    over the 10th percentile), so that a few odd calls — an error answered at once, a call
    that hung — do not set it. ``durations`` sorted; ``math.inf`` if the fast ones took no
    time at all."""
    low = durations[int(len(durations) * share)]
    high = durations[max(0, math.ceil(len(durations) * (1.0 - share)) - 1)]
    return high / low if low > 0 else math.inf


def stretch(tail: Sequence[float], share: float, remember: int) -> float:
    """How far a call running past the route's slowest tenth may go on, as a factor of its
    age: the memory's ``spread`` once it holds ``remember`` calls, 1 before (see the module
    notes). ``tail`` sorted."""
    return spread(tail, share) if len(tail) >= remember else 1.0


class Observation(NamedTuple):
    """One call of the evidence (``calls`` alike, for the simulator's batches). A tuple:
    the simulator makes a thousand of them per judgement."""

    seconds: float
    """Its duration if it ended, its age if it is still running."""
    entered_s: float
    """Its age when the evidence's window began (0 if it started within the window)."""
    ended: bool
    calls: int = 1


def refuse_below(
    observations: Sequence[Observation],
    remembered: Sequence[float],
    *,
    share: float,
    min_evidence: int,
    remember: int,
) -> float:
    """The budget below which a message is refused (see the module notes): the shortest
    budget that fewer than ``share`` of the calls are estimated to outlast (or fewer than
    ``min_evidence`` of the evidence's calls), or that fewer than ``min_evidence`` calls
    could outlast; 0 with no evidence. ``remembered``: durations of the route's last
    completed calls, in any order; until it holds ``remember`` of them, a call running is
    taken to go on no longer than its age."""
    # a call that ended as the window began entered it at its end: it was never at risk
    obs = [o for o in observations if not o.ended or o.entered_s < o.seconds]
    total = sum(o.calls for o in obs)
    if total < min_evidence:
        return 0.0  # too few calls to say anything
    return min(
        _estimated(obs, total, max(share, min_evidence / total)),
        _possible(obs, sorted(remembered), share, min_evidence, remember),
    )


def _estimated(obs: list[Observation], total: int, need: float) -> float:
    """The shortest budget that fewer than ``need`` of the calls are estimated to outlast
    (Kaplan-Meier with late entry); ``math.inf`` if the calls that ended never bring the
    share that low: past them, the calls still running have no known end."""
    by_end = sorted(obs, key=lambda o: o.seconds)
    ends = [o.seconds for o in by_end]
    ends_w = list(accumulate(o.calls for o in by_end))
    by_entry = sorted(obs, key=lambda o: o.entered_s)
    entries = [o.entered_s for o in by_entry]
    entries_w = list(accumulate(o.calls for o in by_entry))

    def reached(keys: list[float], weights: list[int], x: float) -> int:
        """Calls whose key is at least ``x``."""
        i = bisect.bisect_left(keys, x)
        return total - (weights[i - 1] if i else 0)

    ended: dict[float, int] = {}
    for o in obs:
        if o.ended:
            ended[o.seconds] = ended.get(o.seconds, 0) + o.calls
    longer = 1.0
    """The estimated share of calls longer than the last duration walked."""
    for u in sorted(ended):
        at_risk = reached(ends, ends_w, u) - reached(entries, entries_w, u)
        longer *= 1.0 - ended[u] / at_risk
        if longer < need:
            return u
    return math.inf


def _possible(
    obs: list[Observation], tail: list[float], share: float, min_evidence: int, remember: int
) -> float:
    """The shortest budget that fewer than ``min_evidence`` calls could outlast: calls
    that ended longer, and calls running that may go on longer (``_reach``)."""
    full = len(tail) >= remember
    factor = stretch(tail, share, remember)
    reach = sorted(
        (o.seconds if o.ended else _reach(o.seconds, tail, share, full, factor), o.calls)
        for o in obs
    )
    held = 0
    for seconds, calls in reversed(reach):
        held += calls
        if held >= min_evidence:
            return seconds
    return 0.0


def _reach(age: float, tail: list[float], share: float, full: bool, factor: float) -> float:
    """How long a call running for ``age`` may go on: as long as the remembered calls that
    lasted as long go on (their 90th percentile), if they are at least ``share`` of the
    memory; past the route's slowest tenth, its age stretched by the route's spread (the
    few remembered calls longer still are odd ones); with too few calls remembered, no
    longer than its age."""
    if not full:
        return age
    first = bisect.bisect_right(tail, age)
    lasted = len(tail) - first
    if lasted < share * len(tail):
        return age * factor
    return tail[first + max(0, math.ceil(lasted * (1.0 - share)) - 1)]
