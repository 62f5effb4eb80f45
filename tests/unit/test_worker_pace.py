"""A worker's view of the backend's pace: cold never refuses, one slow call is no evidence,
a slowdown shows in the calls in flight, and nothing refuses once the slow calls have left
the window.

Pure computations (``workers.priority.pace.Pace``) on a clock the test moves; the black-box
test of the same behaviour is tests/integration/test_late_refusal.py.
"""

from __future__ import annotations

import math

import pytest

from queuefront.drain import SERVICE_WINDOW_S
from workers.priority.pace import (
    MIN_EVIDENCE,
    RECENT_CALLS_MAX,
    REFUSE_MARGIN_S,
    REFUSE_SHARE,
    Pace,
    RoutePaces,
)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _pace() -> tuple[Pace, _Clock]:
    clock = _Clock()
    return Pace(monotonic=clock), clock


def _complete(pace: Pace, clock: _Clock, seconds: float) -> None:
    """One call of ``seconds``, from its start to its end."""
    with pace.calling():
        clock.advance(seconds)


def _ending_together(pace: Pace, clock: _Clock, durations: list[float]) -> None:
    """Calls of the given durations, started in turn so that they all end now (within the
    window, however long they took)."""
    longest = max(durations)
    start = clock.now
    calls = []
    for seconds in sorted(durations, reverse=True):
        clock.advance(start + longest - seconds - clock.now)
        call = pace.calling()
        call.__enter__()
        calls.append(call)
    clock.advance(start + longest - clock.now)
    for call in calls:
        call.__exit__(None, None, None)


def _called_while_running(
    pace: Pace, clock: _Clock, calls: int, age_s: float, windows_s: list[float]
) -> list[bool]:
    """Whether messages with the given windows are called while ``calls`` calls have been
    running for ``age_s`` (they end afterwards)."""
    running = [pace.calling() for _ in range(calls)]
    for call in running:
        call.__enter__()
    clock.advance(age_s)
    called = [pace.judge(window_s).call for window_s in windows_s]
    for call in running:
        call.__exit__(None, None, None)
    return called


def test_a_cold_worker_never_refuses_not_even_on_calls_in_flight() -> None:
    pace, clock = _pace()
    with pace.calling(), pace.calling():
        clock.advance(30.0)  # two calls in flight for 30 s: still nothing completed
        late = pace.judge(0.5)
    assert late.call and late.service_s == 0.0


def test_a_message_whose_window_cannot_hold_the_calls_is_refused() -> None:
    pace, clock = _pace()
    for _ in range(MIN_EVIDENCE):
        _complete(pace, clock, 4.0)
    refused = pace.judge(3.0)
    assert not refused.call
    assert refused.service_s == pytest.approx(4.0)
    assert pace.judge(4.0 + REFUSE_MARGIN_S + 0.01).call
    assert not pace.judge(4.0 + REFUSE_MARGIN_S / 2).call  # the margin is kept


def test_one_call_that_ran_long_is_no_evidence_about_the_next() -> None:
    """A request that asked the backend for 20 s (or one that hung) says nothing about the
    route's other calls: the next message is called, whatever its window."""
    pace, clock = _pace()
    _complete(pace, clock, 20.4)
    assert pace.judge(3.0).call
    with pace.calling():
        clock.advance(25.0)  # and one call in flight for ever, alone
        assert pace.judge(3.0).call


def test_a_few_slow_calls_among_many_that_fit_refuse_nothing() -> None:
    """A route's ordinary tail — fewer than ``REFUSE_SHARE`` of its calls longer than what
    is left of a message's window — refuses nothing: nearly every call would fit. One more
    slow call makes the share, and the message is refused."""
    slow = MIN_EVIDENCE
    fast = math.floor(slow / REFUSE_SHARE) - slow + 1  # slow / (slow + fast) < REFUSE_SHARE
    pace, clock = _pace()
    _ending_together(pace, clock, [4.0] * slow + [0.05] * fast)
    assert pace.judge(3.0).call
    pace, clock = _pace()
    _ending_together(pace, clock, [4.0] * (slow + 1) + [0.05] * fast)
    assert not pace.judge(3.0).call


def test_calls_slower_than_the_median_refuse_a_window_they_would_outlast() -> None:
    """Calls vary (a brownout's 12-20 s in a 20 s window): a message with 17 s left fits
    the median call but not the slower ones — four calls in ten would end in 504s — and is
    refused; one with its whole window is called."""
    pace, clock = _pace()
    _ending_together(pace, clock, [12.0, 14.0, 16.0, 18.0, 20.0] * 2)
    refused = pace.judge(17.0)
    assert not refused.call
    # what it rests on: the duration that fewer than two of the ten calls are estimated to
    # outlast (the 18 s calls ended; of the calls that lasted that long, two in four
    # went on: 2/4 of the share left)
    assert refused.service_s == pytest.approx(18.0)
    assert pace.judge(18.0 + REFUSE_MARGIN_S + 0.01).call


def test_a_slowdown_shows_in_the_calls_in_flight_before_they_complete() -> None:
    """Calls running past everything the route remembers are taken to vary as the
    remembered calls did (1 to 1.5 s here), stretched to their age: two calls 3 s in
    flight need a window of 4.5 s, before either has ended."""
    pace, clock = _pace()
    for i in range(RECENT_CALLS_MAX):
        _complete(pace, clock, 1.0 + 0.5 * (i % 5) / 4)
    clock.advance(SERVICE_WINDOW_S + 0.1)  # the calls have left the window
    with pace.calling(), pace.calling():
        clock.advance(3.0)
        refused = pace.judge(4.0)
        assert not refused.call and refused.service_s == pytest.approx(4.5)
        assert pace.judge(4.5 + REFUSE_MARGIN_S + 0.01).call
    assert pace.judge(3.0 + REFUSE_MARGIN_S + 0.01).call  # they ended after 3 s: known now


def test_calls_a_little_past_a_memory_that_never_varied_refuse_little() -> None:
    """A backend slowed by load: the route's calls all took 300 ms, three now run for
    400 ms. Nothing says they will go on for long: a message with seconds left is called
    (their end taken as unknown, it was refused: the compose restart test's 503s)."""
    pace, clock = _pace()
    for _ in range(RECENT_CALLS_MAX):
        _complete(pace, clock, 0.3)
    assert _called_while_running(pace, clock, 3, 0.4, [9.0, 0.35]) == [True, False]


def test_a_few_odd_calls_remembered_say_nothing_about_the_calls_running() -> None:
    """Four requests asked the backend for 20 s, sixty took 300 ms; three calls now run for
    half a second. The four are not the route's tail: a message with seconds left is
    called (read as the tail, they refused it: the compose restart test's 503s)."""
    pace, clock = _pace()
    for i in range(RECENT_CALLS_MAX):
        _complete(pace, clock, 20.3 if i % 16 == 0 else 0.3)
    clock.advance(SERVICE_WINDOW_S + 0.1)
    _complete(pace, clock, 0.3)
    assert _called_while_running(pace, clock, 3, 0.5, [9.0, 0.5]) == [True, False]


def test_one_call_that_ran_long_beside_calls_running_young_refuses_nothing() -> None:
    """A request that asked the backend for 25 s ended at its deadline, 20 s; ten calls of
    a 300 ms route run, 0.4 s old. The estimate carries the share of calls still running
    up to the one long call; but only that one call could outlast a window of seconds, and
    one call is no evidence (the compose restart test: every message refused for 5 s)."""
    pace, clock = _pace()
    for _ in range(RECENT_CALLS_MAX):
        _complete(pace, clock, 0.3)
    _complete(pace, clock, 20.0)
    assert _called_while_running(pace, clock, 10, 0.4, [9.0]) == [True]


def test_calls_running_within_what_the_route_remembers_end_as_it_remembers() -> None:
    """Past the evidence, the route's last completed calls say how long calls that have
    run this long go on: calls of 4 s remembered, two calls 3 s in flight, a message with
    5 s left is called and one with 3.5 s is not."""
    pace, clock = _pace()
    for _ in range(RECENT_CALLS_MAX):
        _complete(pace, clock, 4.0)
    clock.advance(SERVICE_WINDOW_S + 0.1)  # they have left the window, not the memory
    with pace.calling(), pace.calling():
        clock.advance(3.0)
        assert pace.judge(4.0 + REFUSE_MARGIN_S + 0.01).call
        refused = pace.judge(3.5)
        assert not refused.call and refused.service_s == pytest.approx(4.0)


def test_the_calls_still_running_count_beside_the_first_that_ended() -> None:
    """A brownout's first slow calls end: the fastest of them. Ten calls of 12.8-19.2 s
    started together; when the two fastest end, a message with 17 s left fits them, but
    eight calls of the same moment still run and four of those will not end in 17 s. Judged
    on the calls that ended, it was called into a 504; the calls still running refuse it."""
    pace, clock = _pace()
    for i in range(RECENT_CALLS_MAX):  # 1.28 to 1.92 s: the spread the slow calls keep
        _complete(pace, clock, 1.6 * (0.8 + 0.1 * (i % 5)))
    durations = [12.8, 14.4, 16.0, 17.6, 19.2] * 2
    calls = [pace.calling() for _ in durations]
    for call in calls:
        call.__enter__()
    clock.advance(12.8)
    for call in calls[:2]:  # the two fastest end
        call.__exit__(None, None, None)
    refused = pace.judge(17.0)
    assert not refused.call
    # nothing remembered ran past 12.8 s: the calls running are taken to vary as the
    # remembered ones did (1.5 times from fast to slow), stretched to 12.8 s
    assert refused.service_s == pytest.approx(19.2)
    assert pace.judge(19.2 + REFUSE_MARGIN_S + 0.01).call
    for call in calls[2:]:
        call.__exit__(None, None, None)


def test_a_worker_that_has_just_started_is_not_refused_by_its_own_first_calls() -> None:
    """A worker's first calls start together; the fastest ends first while the others still
    run. That is not a slowdown (nothing says calls were faster before), only the rest of
    the same wave: until it remembers ``RECENT_CALLS_MAX`` calls, a message with a window
    longer than every call running is called."""
    pace, clock = _pace()
    calls = [pace.calling() for _ in range(10)]
    for call in calls:
        call.__enter__()
    clock.advance(1.28)
    calls[0].__exit__(None, None, None)
    clock.advance(0.1)
    assert pace.judge(1.28 + 0.1 + REFUSE_MARGIN_S + 0.01).call
    assert not pace.judge(1.0).call  # nine calls already older than 1 s
    for call in calls[1:]:
        call.__exit__(None, None, None)


def test_nothing_refuses_once_the_slow_calls_leave_the_window() -> None:
    """Every message refused after a slow spell is not measured; the spell's calls alone
    stop counting once they are older than the window, so the route is called again."""
    pace, clock = _pace()
    for _ in range(MIN_EVIDENCE + 2):
        _complete(pace, clock, 4.0)
    assert not pace.judge(3.0).call
    clock.advance(SERVICE_WINDOW_S + 0.01)
    after = pace.judge(3.0)
    assert after.call and after.service_s == 0.0


def test_one_routes_slow_calls_never_refuse_another_routes_messages() -> None:
    """A report that takes 10 s (in flight, and completed) says nothing about a login of
    50 ms: each route is judged on its own calls."""
    clock = _Clock()
    paces = RoutePaces(monotonic=clock)
    _complete(paces.of("login"), clock, 0.05)
    _complete(paces.of("report"), clock, 10.0)
    with paces.of("report").calling(), paces.of("report").calling():
        clock.advance(4.0)
        assert paces.of("login").judge(1.0).call
        assert not paces.of("report").judge(3.0).call
    assert paces.of("login") is paces.of("login")
