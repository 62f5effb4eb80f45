"""The one back-off every retry loop uses: exponential, capped, jittered as asked."""

from __future__ import annotations

import random

from queuefront.backoff import Backoff, backoff


def test_the_step_doubles_from_the_first_and_stops_at_the_cap() -> None:
    steps = [backoff(n, first_s=0.5, cap_s=10.0, jitter="none") for n in range(1, 8)]
    assert steps == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff(0, first_s=0.5, cap_s=10.0, jitter="none") == 0.5  # no failure yet
    assert backoff(10_000, first_s=0.5, cap_s=10.0, jitter="none") == 10.0  # no overflow


def test_full_jitter_spreads_over_the_whole_step() -> None:
    rng = random.Random(17)
    pauses = [
        backoff(3, first_s=1.0, cap_s=20.0, jitter="full", rand=rng.random) for _ in range(300)
    ]
    assert all(0 <= p <= 4.0 for p in pauses)
    assert min(pauses) < 0.5 and max(pauses) > 3.5
    assert backoff(3, first_s=1.0, cap_s=20.0, jitter="full", rand=lambda: 1.0) == 4.0


def test_equal_jitter_never_retries_sooner_than_half_the_step() -> None:
    rng = random.Random(17)
    pauses = [
        backoff(2, first_s=1.0, cap_s=4.0, jitter="equal", rand=rng.random) for _ in range(300)
    ]
    assert all(1.0 <= p <= 2.0 for p in pauses)
    assert max(pauses) - min(pauses) > 0.8


def test_a_named_back_off_is_the_same_function() -> None:
    policy = Backoff(first_s=0.05, cap_s=2.0, jitter="full")
    assert policy(4, rand=lambda: 1.0) == backoff(
        4, first_s=0.05, cap_s=2.0, jitter="full", rand=lambda: 1.0
    )
    assert policy(4, rand=lambda: 0.0) == 0.0
