"""queuefront.clock: the reference clock follows Redis's TIME, corrected for the round trip."""

from __future__ import annotations

import os
import time

import pytest
from redis.asyncio import Redis

from queuefront.clock import SAMPLES_KEPT, ReferenceClock

REDIS_URL = os.environ.get("QF_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def test_a_reading_counts_as_of_the_middle_of_its_round_trip() -> None:
    clock = ReferenceClock()
    sent = time.monotonic()
    # the server said 5000.0 halfway through a 20 ms round trip that ended just now
    clock.add_sample(5000.0, sent - 0.02, sent)
    assert clock.now() - (5000.0 + 0.01 + (time.monotonic() - sent)) == pytest.approx(0, abs=1e-3)
    assert clock.uncertainty_s() == pytest.approx(0.01)
    assert clock.synced


def test_the_sample_with_the_shortest_round_trip_wins() -> None:
    """A reading delayed on its way back (a busy event loop, a busy Redis) would put the
    clock behind by up to that delay; among recent samples the tightest one is used."""
    clock = ReferenceClock()
    base = time.monotonic()
    clock.add_sample(5000.0, base - 0.002, base)  # exact: 1 ms either way
    # later samples, read by Redis 1 ms after they were sent, whose answers then waited
    # 400 ms (taken at face value, each would put the clock 200 ms behind)
    for i in range(1, SAMPLES_KEPT):
        sent = base + i
        clock.add_sample(5000.0 + i, sent - 0.002, sent + 0.4)
    assert clock.now() - (5000.0 + 0.001 + (time.monotonic() - base)) == pytest.approx(
        0, abs=2e-3
    )
    assert clock.uncertainty_s() == pytest.approx(0.001)


def test_the_offset_is_the_wall_clocks_distance_from_the_reference() -> None:
    clock = ReferenceClock()
    now = time.monotonic()
    clock.add_sample(time.time() + 12.5, now, now)  # the reference is 12.5 s ahead of us
    assert clock.offset_s() == pytest.approx(-12.5, abs=0.01)


async def test_synced_with_a_real_redis() -> None:
    """Redis runs on this host: its TIME and our wall clock agree to within milliseconds."""
    redis = Redis.from_url(REDIS_URL)
    try:
        clock = ReferenceClock()
        await clock.sync(redis)
    finally:
        await redis.aclose()
    assert clock.synced
    assert abs(clock.offset_s()) < 0.05
    assert abs(clock.now() - time.time()) < 0.05
