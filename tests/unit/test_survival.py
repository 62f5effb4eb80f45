"""The estimate behind the workers' late refusal (``workers.priority.survival``): read off a
steady stream of calls as a worker sees it, it finds the calls' own 90th percentile, where
the calls that ended alone read short; calls running past a full memory are taken to vary
as the remembered ones did, stretched to their age; a batch of calls counts as that many calls.

Pure computations on streams the test builds; the judgement on a worker's clock is
tests/unit/test_worker_pace.py.
"""

from __future__ import annotations

import math

import pytest

from workers.priority.survival import Observation, refuse_below, spread

WINDOW_S = 5.0
SHARE = 0.1
MIN_EVIDENCE = 2
DURATIONS = tuple(float(s) for s in range(12, 32))
"""A call's duration, taken in turn: 12 to 31 s; a budget of 30 s holds all but one call
in twenty, 29 s all but two (a tenth: still refused)."""


def _stream(now: float, every_s: float) -> list[Observation]:
    """What a worker sees at ``now`` of calls started every ``every_s`` for long enough
    to be steady: those that ended in the last window, and those running."""
    out = []
    start, i = 0.0, 0
    begun = now - WINDOW_S
    while start < now:
        seconds = DURATIONS[i % len(DURATIONS)]
        end = start + seconds
        if end > now:
            out.append(Observation(now - start, max(0.0, begun - start), ended=False))
        elif end >= begun:
            out.append(Observation(seconds, max(0.0, begun - start), ended=True))
        start, i = start + every_s, i + 1
    return out


def _threshold(obs: list[Observation], remembered: list[float] | None = None) -> float:
    memory = list(DURATIONS) * 7 if remembered is None else remembered
    return refuse_below(
        obs, memory, share=SHARE, min_evidence=MIN_EVIDENCE, remember=len(memory)
    )


@pytest.mark.parametrize("now", [200.0, 200.3, 201.7, 205.0])
def test_a_steady_stream_reads_as_its_own_90th_percentile(now: float) -> None:
    """Calls that ended in the window are a biased sample when calls last longer than it
    (more short calls end in it than are started); with the calls running counted from the
    age at which they entered the window, the estimate is the calls' own 90th percentile,
    within the step between two durations (30 s; the stream's phase decides ties)."""
    obs = _stream(now, every_s=0.1)
    assert 29.0 <= _threshold(obs) <= 30.0
    ended_alone = [o for o in obs if o.ended]
    assert _threshold(ended_alone) < 20.0  # what the calls that ended say alone
    # and counted from their start, the long calls that entered late weigh as if every
    # call had been seen from its start: too long
    from_start = [Observation(o.seconds, 0.0, o.ended) for o in obs]
    assert _threshold(from_start) == 31.0


def test_a_batch_counts_as_that_many_calls() -> None:
    long, short = Observation(2.0, 0.0, ended=True), Observation(1.0, 0.0, ended=True)
    one_by_one = [long] * 3 + [short] * 7
    batched = [Observation(2.0, 0.0, True, calls=3), Observation(1.0, 0.0, True, calls=7)]
    assert _threshold(one_by_one) == _threshold(batched) == 2.0


def test_a_few_odd_calls_do_not_set_the_spread() -> None:
    """Errors answered at once, a call that hung: fewer than a tenth, they change nothing."""
    calls = sorted([0.3] * 58 + [0.002] * 3 + [30.0] * 3)
    assert spread(calls, SHARE) == 1.0
    assert spread(sorted([0.0] * 10 + [0.3] * 54), SHARE) == math.inf


def test_no_evidence_or_too_little_refuses_nothing() -> None:
    assert _threshold([]) == 0.0
    assert _threshold([Observation(30.0, 0.0, ended=False)]) == 0.0  # one call, hung


def test_calls_running_past_a_full_memory_vary_as_the_remembered_ones_did() -> None:
    running = [Observation(35.0, 0.0, ended=False)] * 3
    # everything remembered ended within 31 s; its 90th percentile (29 s) over its 10th
    # (14 s) stretches the oldest call's 35 s
    assert spread(sorted(DURATIONS * 7), SHARE) == pytest.approx(29.0 / 14.0)
    assert _threshold(running) == pytest.approx(35.0 * 29.0 / 14.0)
    # until the memory is full, they say "at least 35 s" and no more
    short = list(DURATIONS)
    assert refuse_below(running, short, share=SHARE, min_evidence=2, remember=64) == 35.0


def test_past_the_evidence_the_memory_says_how_long_calls_go_on() -> None:
    """Calls running for 25 s, nothing ended: the remembered calls that lasted longer
    (26-31 s, a third of the memory) went on to 31 s (their 90th percentile), and so may
    these; calls running for 12.5 s may go on as long as any (30 s: 90 % of the memory)."""
    assert _threshold([Observation(25.0, 0.0, ended=False, calls=30)]) == 31.0
    assert _threshold([Observation(25.0, 0.0, ended=False, calls=3)]) == 31.0
    assert _threshold([Observation(12.5, 0.0, ended=False, calls=3)]) == 30.0
