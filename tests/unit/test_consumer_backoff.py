"""The pause after failed receives: jittered, so consumers that failed together (every
worker, when SQS is away) do not all come back in one burst."""

from __future__ import annotations

import random

from queuefront.consumer import (
    RECEIVE_ERROR_BACKOFF,
    RECEIVE_ERROR_BACKOFF_MAX_S,
    RECEIVE_ERROR_BACKOFF_S,
)


def test_consumers_that_fail_together_retry_spread_out() -> None:
    rng = random.Random(16)
    first = [RECEIVE_ERROR_BACKOFF(1, rng.random) for _ in range(200)]
    assert all(RECEIVE_ERROR_BACKOFF_S / 2 <= d <= RECEIVE_ERROR_BACKOFF_S for d in first)
    # spread over the second half of the step, not one instant
    assert max(first) - min(first) > 0.4 * RECEIVE_ERROR_BACKOFF_S
    assert len({round(d, 3) for d in first}) > 100


def test_the_pause_grows_with_failures_in_a_row_and_is_capped() -> None:
    rng = random.Random(16)
    for failures in range(1, 12):
        step = min(RECEIVE_ERROR_BACKOFF_MAX_S, RECEIVE_ERROR_BACKOFF_S * 2 ** (failures - 1))
        pauses = [RECEIVE_ERROR_BACKOFF(failures, rng.random) for _ in range(50)]
        assert all(step / 2 <= d <= step for d in pauses), failures
    assert RECEIVE_ERROR_BACKOFF(50, lambda: 1.0) == RECEIVE_ERROR_BACKOFF_MAX_S
