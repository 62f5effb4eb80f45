"""queuefront.heap: the collector's settings for a process under load."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from queuefront import heap


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()
    if heap._observe in gc.callbacks:
        gc.callbacks.remove(heap._observe)


def _pauses(generation: str) -> float:
    value = REGISTRY.get_sample_value(
        "queuefront_gc_pause_seconds_count", {"generation": generation}
    )
    return value or 0.0


def test_settle_freezes_start_up_and_raises_the_young_threshold(restored: None) -> None:
    heap.settle()
    assert gc.get_freeze_count() > 1000  # at least this test process's modules
    assert gc.get_threshold() == (heap.GC_YOUNG_THRESHOLD, *heap.GC_OLDER_THRESHOLDS)
    heap.settle()  # twice is once
    assert gc.callbacks.count(heap._observe) == 1


def test_every_collection_after_settle_is_timed(restored: None) -> None:
    heap.settle()
    before = _pauses("2")
    gc.collect()
    gc.collect()
    assert _pauses("2") == before + 2
