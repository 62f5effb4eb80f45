"""The drain estimate rests on recent evidence, and a stale one lets a bounded probe through.

Pure computations (``queuefront.drain.DrainEstimate``, ``BacklogMonitor.judge``) fed with
the reports a worker writes; the black-box test of the same behaviour is
tests/integration/test_admission.py.
"""

from __future__ import annotations

import time
from typing import Any, cast

import pytest

from queuefront import drain
from queuefront.drain import DrainEstimate, DrainReport
from service.admission import (
    ADMISSION_MARGIN_S,
    ADMISSION_MARGIN_SHARE,
    BacklogMonitor,
    usable_s,
)

WORKER = "w1"
SLOTS = 4


class _Worker:
    """Writes the reports a worker with ``SLOTS`` slots would, on a clock the test moves."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.completed = 0
        self.busy_s = 0.0

    def work(self, seconds: float, completions: int, each_s: float) -> None:
        self.at += seconds
        self.completed += completions
        self.busy_s += completions * each_s

    def report(self) -> dict[str, DrainReport]:
        return {WORKER: DrainReport(self.at, SLOTS, self.completed, self.busy_s)}


def test_the_rate_is_a_workers_own_measurement_however_often_the_pod_reads() -> None:
    """A worker completing 10 messages/s reports once a second; a pod that reads five
    times a second must not take the four reads without a new report for zeros."""
    worker, estimate, seen = _Worker(1000.0), DrainEstimate(), 0.0
    estimate.update(worker.report(), worker.at, seen)
    for _ in range(10):
        worker.work(1.0, 10, 0.1)
        for _ in range(5):
            seen += 0.2
            estimate.update(worker.report(), worker.at + seen % 1.0, seen)
    assert 9.5 < estimate.rate < 10.5, estimate.rate


def test_a_worker_that_completes_nothing_drains_nothing() -> None:
    worker, estimate = _Worker(1000.0), DrainEstimate()
    estimate.update(worker.report(), worker.at, 0.0)
    worker.work(1.0, 10, 0.1)
    estimate.update(worker.report(), worker.at, 1.0)
    for second in range(2, 30):
        worker.work(1.0, 0, 0.0)
        estimate.update(worker.report(), worker.at, float(second))
    assert estimate.rate < 0.01


def test_the_service_time_is_the_mean_of_recent_completions_only() -> None:
    """Slow completions, then none for longer than the window, then one fast one: the
    service time is the fast one's, not an average with the slow spell."""
    worker, estimate = _Worker(1000.0), DrainEstimate()
    estimate.update(worker.report(), worker.at, 0.0)
    for second in range(1, 6):
        worker.work(1.0, 4, 3.0)
        estimate.update(worker.report(), worker.at, float(second))
    assert estimate.service_s == 3.0
    assert not estimate.stale(5.0)
    # nothing completes: the last mean stands, and ages
    for second in range(6, 14):
        worker.work(1.0, 0, 0.0)
        estimate.update(worker.report(), worker.at, float(second))
    assert estimate.service_s == 3.0
    assert not estimate.stale(5.0 + drain.SERVICE_WINDOW_S + 3.0 - 0.1)
    assert estimate.stale(5.0 + drain.SERVICE_WINDOW_S + 3.0 + 0.1)
    worker.work(1.0, 1, 0.02)
    estimate.update(worker.report(), worker.at, 14.0)
    assert estimate.service_s == pytest.approx(0.02)
    assert not estimate.stale(14.0)


def test_reports_are_judged_on_the_reference_clock_they_carry() -> None:
    """A report is live while the reference clock says it is recent, whatever the
    wall clock of the host that reads it."""
    estimate = DrainEstimate()
    report = {WORKER: DrainReport(1000.0, SLOTS, 0, 0.0)}
    estimate.update(report, 1000.0 + drain.STALE_AFTER_S - 0.5, 0.0)
    assert estimate.live_workers == 1 and estimate.slots == SLOTS
    estimate.update(report, 1000.0 + drain.STALE_AFTER_S + 0.5, 1.0)
    assert estimate.live_workers == 0 and estimate.slots == 0


def _monitor() -> BacklogMonitor:
    # judge() reads only the monitor's own state: no queue or Redis is called here
    return BacklogMonitor(
        {},
        cast(Any, None),
        cast(Any, None),
        threshold=100,
        wait_s=5.0,
        poll_s=0.2,
        predictive=True,
    )


def _slow_spell(monitor: BacklogMonitor, ended_s_ago: float) -> None:
    """Completions of 2.9 s (a 3 s window) that were last seen ``ended_s_ago``."""
    now = time.monotonic()
    worker = _Worker(1000.0)
    monitor.estimate.update(worker.report(), worker.at, now - ended_s_ago - 5)
    for back in range(4, -1, -1):
        worker.work(1.0, 4, 2.9)
        monitor.estimate.update(worker.report(), worker.at, now - ended_s_ago - back)
    # the worker is alive and reporting, with nothing completed since
    monitor.estimate.update(
        {WORKER: DrainReport(worker.at + ended_s_ago, SLOTS, worker.completed, worker.busy_s)},
        worker.at + ended_s_ago,
        now,
    )


def test_a_fresh_slow_estimate_refuses_without_probes() -> None:
    monitor = _monitor()
    _slow_spell(monitor, ended_s_ago=1.0)
    verdicts = [monitor.judge("normal", 3.0) for _ in range(20)]
    assert not any(v.admitted for v in verdicts)
    assert verdicts[0].service_s == 2.9


def test_a_stale_estimate_lets_one_probe_through_per_window() -> None:
    window_s = 0.3
    monitor = _monitor()
    _slow_spell(monitor, ended_s_ago=drain.SERVICE_WINDOW_S + 5.0)
    first = [monitor.judge("normal", window_s) for _ in range(20)]
    assert [v.probe for v in first] == [True] + [False] * 19
    assert [v.admitted for v in first] == [True] + [False] * 19
    time.sleep(window_s + 0.05)  # the probe's window has passed, nothing was measured
    again = [monitor.judge("normal", window_s) for _ in range(20)]
    assert [v.probe for v in again] == [True] + [False] * 19


def test_no_probe_when_the_queue_itself_is_too_long_or_no_worker_reports() -> None:
    monitor = _monitor()
    _slow_spell(monitor, ended_s_ago=drain.SERVICE_WINDOW_S + 5.0)
    monitor.backlog = {"high": 0, "normal": 10_000}
    assert monitor.predicted_wait_s("normal") > usable_s(3.0)
    assert not monitor.judge("normal", 3.0).admitted
    monitor.backlog = {"high": 0, "normal": 0}
    monitor.estimate.update({}, 0.0, time.monotonic())  # every worker gone
    assert not monitor.judge("normal", 3.0).admitted


def _brownout(monitor: BacklogMonitor, normal_backlog: int) -> None:
    """Fresh completions of 16 s calls, 20 a second from 320 busy slots (the simulated
    brownout: bench/scaling/scenarios/backend-brownout.toml), and a normal backlog."""
    now, at, completed, busy_s = time.monotonic(), 1000.0, 0, 0.0
    monitor.estimate.update({WORKER: DrainReport(at, 320, 0, 0.0)}, at, now - 5)
    for back in range(4, -1, -1):
        at, completed, busy_s = at + 1.0, completed + 20, busy_s + 20 * 16.0
        report = {WORKER: DrainReport(at, 320, completed, busy_s)}
        monitor.estimate.update(report, at, now - back)
    monitor.backlog = {"high": 0, "normal": normal_backlog}


def test_a_service_time_near_the_window_still_leaves_room_for_a_short_wait() -> None:
    """16 s calls in a 20 s window: admission keeps a margin of seconds, not a share of
    the window (a fifth of it left no room for any wait, and the pods refused nearly
    everything the backend had slots for). A backlog of 1 s is admitted; one of 5 s,
    which with a 16 s call would outlast the window's 19 s, is refused at once, with a
    Retry-After of the seconds it is over."""
    monitor = _monitor()
    _brownout(monitor, normal_backlog=20)
    assert monitor.estimate.service_s == pytest.approx(16.0)
    assert monitor.predicted_wait_s("normal") == pytest.approx(1.0, rel=0.05)
    admitted = monitor.judge("normal", 20.0)
    assert admitted.admitted and not admitted.probe
    _brownout(monitor, normal_backlog=100)
    refused = monitor.judge("normal", 20.0)
    assert not refused.admitted and not refused.probe
    assert refused.retry_after_s == 2  # 5 s of wait where 20 - 1 - 16 = 3 s fit


def test_a_short_window_keeps_a_share_of_it_as_margin() -> None:
    """A whole second of margin would leave a 1 s route nothing (every request refused)
    and take a third of a 3 s one; a short window keeps a fifth of it."""
    assert usable_s(20.0) == pytest.approx(20.0 - ADMISSION_MARGIN_S)
    assert usable_s(3.0) == pytest.approx(3.0 * (1 - ADMISSION_MARGIN_SHARE))
    assert usable_s(1.0) == pytest.approx(0.8)
    monitor = _monitor()
    worker = _Worker(1000.0)
    now = time.monotonic()
    monitor.estimate.update(worker.report(), worker.at, now - 5)
    for back in range(4, -1, -1):  # 4 slots of 50 ms calls, busy
        worker.work(1.0, 80, 0.05)
        monitor.estimate.update(worker.report(), worker.at, now - back)
    monitor.backlog = {"high": 0, "normal": 40}  # 0.5 s of wait
    assert monitor.judge("normal", 1.0).admitted
