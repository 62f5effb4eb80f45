"""The pods count the workers' slots within the backend limit they share.

Ten workers of 100 slots sharing ``QF_BACKEND_MAX_CONCURRENCY=400`` hold 400 calls, not
1,000: a pod that counted 1,000 would predict waits two and a half times too short and
admit what the workers then refuse late. The reports carry each worker's limit
(``queuefront.drain.DrainReport.shared_limit``); older reports without it decode as
unlimited, so a rolling deploy reads both.
"""

from __future__ import annotations

import msgspec

from queuefront.drain import DrainEstimate, DrainReport

NOW = 1000.0


def _report(
    slots: int, shared_limit: int = 0, completed: int = 0, busy_s: float = 0.0
) -> DrainReport:
    return DrainReport(NOW, slots, completed, busy_s, shared_limit)


def test_slots_count_within_the_limit_the_workers_share() -> None:
    estimate = DrainEstimate()
    reports = {f"w{i}": _report(100, shared_limit=400) for i in range(10)}
    estimate.update(reports, NOW, 0.0)
    assert estimate.slots == 400
    # a second read with completions: the potential is the shared limit's, 400 / 1.6 s
    later = {w: DrainReport(NOW + 1, 100, 40, 40 * 1.6, 400) for w in reports}
    estimate.update(later, NOW + 1, 1.0)
    assert abs(estimate.potential - 400 / 1.6) < 1e-6


def test_a_fleet_under_its_limit_counts_its_own_slots() -> None:
    estimate = DrainEstimate()
    estimate.update({f"w{i}": _report(100, shared_limit=400) for i in range(3)}, NOW, 0.0)
    assert estimate.slots == 300


def test_workers_without_a_limit_count_in_full_beside_those_with_one() -> None:
    """A deploy that turns the limit on: the old workers (no limit) are not held by it."""
    estimate = DrainEstimate()
    reports = {"old": _report(32), **{f"new{i}": _report(100, shared_limit=150) for i in range(2)}}
    estimate.update(reports, NOW, 0.0)
    assert estimate.slots == 32 + 150


def test_a_report_without_the_limit_decodes_as_unlimited() -> None:
    """What a worker of the release before writes: four fields."""
    old = msgspec.msgpack.encode([NOW, 32, 5, 1.0])
    report = msgspec.msgpack.decode(old, type=DrainReport)
    assert report.shared_limit == 0 and report.slots == 32
