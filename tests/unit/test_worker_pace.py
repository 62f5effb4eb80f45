"""A worker's view of the backend's pace: cold never refuses, a slowdown shows in the calls
in flight, and an old "too slow" is probed rather than believed.

Pure computations (``workers.priority.pace.Pace``) on a clock the test moves; the black-box
test of the same behaviour is tests/integration/test_late_refusal.py.
"""

from __future__ import annotations

import pytest

from queuefront.drain import SERVICE_WINDOW_S
from workers.priority.pace import REFUSE_MARGIN_S, Pace, RoutePaces


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
    judgement = pace.judge(60.0)
    with pace.calling(judgement):
        clock.advance(seconds)


def test_a_cold_worker_never_refuses_not_even_on_a_call_in_flight() -> None:
    pace, clock = _pace()
    judgement = pace.judge(60.0)
    with pace.calling(judgement):
        clock.advance(30.0)  # one call in flight for 30 s: still nothing completed
        late = pace.judge(0.5)
    assert late.call and late.service_s == 0.0


def test_a_message_whose_window_cannot_hold_the_mean_is_refused() -> None:
    pace, clock = _pace()
    _complete(pace, clock, 4.0)
    refused = pace.judge(3.0)
    assert not refused.call
    assert refused.service_s == pytest.approx(4.0)
    assert pace.judge(4.0 + REFUSE_MARGIN_S + 0.01).call
    assert not pace.judge(4.0 + REFUSE_MARGIN_S / 2).call  # the margin is kept


def test_a_slowdown_shows_in_the_oldest_call_before_it_completes() -> None:
    pace, clock = _pace()
    _complete(pace, clock, 0.05)
    judgement = pace.judge(10.0)
    with pace.calling(judgement):
        clock.advance(3.0)
        assert not pace.judge(2.5).call  # 3 s in flight: 2.5 s cannot hold a call
        assert pace.judge(5.0).call


def test_the_estimate_follows_a_recovery_once_the_slow_calls_leave_the_window() -> None:
    pace, clock = _pace()
    _complete(pace, clock, 4.0)
    clock.advance(SERVICE_WINDOW_S + 0.1)
    for _ in range(3):
        _complete(pace, clock, 0.05)
    assert pace.judge(1.0).call


def test_an_old_too_slow_is_probed_one_message_at_a_time_not_believed() -> None:
    """Every message refused: nothing completes, the mean stays at 4 s. Once it is stale,
    one message goes through; while it runs the others are still refused; once it has
    completed fast, everything is called again."""
    pace, clock = _pace()
    _complete(pace, clock, 4.0)
    assert not pace.judge(3.0).call
    clock.advance(SERVICE_WINDOW_S + 4.0 + 0.01)  # stale: the window and one call
    probe = pace.judge(3.0)
    assert probe.call and probe.probe
    with pace.calling(probe):
        clock.advance(0.05)
        assert not pace.judge(3.0).call  # one probe at a time
    after = pace.judge(3.0)
    assert after.call and not after.probe
    assert after.service_s == pytest.approx(0.05)


def test_a_probe_is_never_sent_past_a_call_in_flight_that_outlasts_the_window() -> None:
    pace, clock = _pace()
    _complete(pace, clock, 4.0)
    judgement = pace.judge(60.0)
    with pace.calling(judgement):
        clock.advance(SERVICE_WINDOW_S + 4.0 + 0.01)  # stale mean, a 9 s call in flight
        assert not pace.judge(3.0).call


def test_one_routes_slow_calls_never_refuse_another_routes_messages() -> None:
    """A report that takes 10 s (in flight, and completed) says nothing about a login of
    50 ms: each route is judged on its own calls."""
    clock = _Clock()
    paces = RoutePaces(monotonic=clock)
    _complete(paces.of("login"), clock, 0.05)
    _complete(paces.of("report"), clock, 10.0)
    judgement = paces.of("report").judge(60.0)
    with paces.of("report").calling(judgement):
        clock.advance(8.0)
        assert paces.of("login").judge(1.0).call
        assert not paces.of("report").judge(5.0).call
    assert paces.of("login") is paces.of("login")
