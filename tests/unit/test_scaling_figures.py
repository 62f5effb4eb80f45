"""The measured figures travel from bench.throughput to the simulator through one file:
what the benchmark writes is what the simulator reads, and a missing figure is named."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench.closedloop import WrkResult
from bench.scaling.figures import FIGURES_PATH, FiguresError, ThroughputFigures
from bench.throughput import Sample, Series, figures


def sample(rps: float, cpu: dict[str, float], sqs: dict[str, float]) -> Sample:
    return Sample(WrkResult(1000, rps, 10.0, 20.0, 0, 0), cpu, None, sqs)


def test_what_the_benchmark_writes_the_simulator_reads(tmp_path: Path) -> None:
    series = {
        "proxied": Series(
            [
                sample(
                    1000, {"api": 0.3, "worker": 0.5, "machine": 1.0}, {"api": 0.2, "worker": 0.3}
                ),
                sample(
                    1200, {"api": 0.5, "worker": 0.7, "machine": 1.2}, {"api": 0.2, "worker": 0.2}
                ),
                sample(
                    1100, {"api": 0.4, "worker": 0.6, "machine": 1.1}, {"api": 0.2, "worker": 0.25}
                ),
            ]
        ),
        "votes": Series(
            [sample(5000, {"api": 0.1, "writer": 0.04}, {"api": 0.03, "writer": 0.04})]
        ),
    }
    args = argparse.Namespace(
        api_processes=1,
        worker_concurrency=64,
        backend_limit=0,
        connections=64,
        seconds=5,
        rounds=3,
    )
    path = tmp_path / "throughput.json"
    figures(series, args, [0.4, 0.5]).save(path)
    loaded = ThroughputFigures.load(path)
    assert loaded.cpu_s("proxied", "api") == pytest.approx(0.0004)  # the median, in seconds
    assert loaded.cpu_s("proxied", "worker") == pytest.approx(0.0006)
    assert loaded.cpu_s("votes", "writer") == pytest.approx(0.00004)
    assert loaded.sqs_calls("proxied") == pytest.approx(0.45)
    assert loaded.paths["proxied"].requests_per_s == 1100
    assert loaded.machine["speed_probe_s"] == [0.4, 0.5]
    with pytest.raises(FiguresError, match=r"no 'cached' path.*bench\.throughput"):
        loaded.cpu_s("cached", "api")


def test_a_file_of_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "throughput.json"
    path.write_text(json.dumps({"format": 99, "paths": {}}))
    with pytest.raises(FiguresError, match="format 99"):
        ThroughputFigures.load(path)
    with pytest.raises(FiguresError, match="does not exist"):
        ThroughputFigures.load(tmp_path / "missing.json")


def test_the_repository_has_the_figures_the_simulator_needs() -> None:
    shipped = ThroughputFigures.load(FIGURES_PATH)
    for path, group in (
        ("proxied", "api"),
        ("proxied", "worker"),
        ("cached", "api"),
        ("votes", "api"),
        ("votes", "writer"),
    ):
        assert shipped.cpu_s(path, group) > 0, (path, group)
