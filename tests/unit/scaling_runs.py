"""The shipped scenarios' runs, shared by the scaling tests that read them.

Each run takes seconds (the hyper-scale swing ~15 s); test_scaling_sim (conservation) and
test_scaling_policy (the criteria) read the same results, so one run serves both."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from bench.scaling import scenario
from bench.scaling.run import simulate

SCENARIOS = sorted(
    (Path(__file__).resolve().parents[2] / "bench" / "scaling" / "scenarios").glob("*.toml")
)
assert SCENARIOS, "no shipped scenarios found"


@functools.cache
def shipped(path: Path, reactive: bool = False) -> dict[str, Any]:
    """The result of a shipped scenario as shipped, or without its scheduled events."""
    return simulate(scenario.load(path), {"scaling_events": {}} if reactive else None).result
