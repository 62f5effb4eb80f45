"""Measured per-request costs: the file ``python -m bench.throughput`` writes and the
simulator reads (``bench/figures/throughput.json``, kept in the repository so that the
simulator and its tests run on measured figures, never on numbers typed in).

Format (``format`` = 1)::

    {
      "format": 1,
      "measured_at": "2026-05-04T17:01:09Z",      # UTC, end of the run
      "commit": "15df548",                         # git HEAD of the measured code ("" if unknown)
      "command": "python -m bench.throughput --rounds 1 ...",
      "machine": {
        "cores": 2,
        "load_average": [1.2, 1.0, 0.9],           # after the run
        "speed_probe_s": [0.41, 0.44],             # bench.throughput.speed_probe_s, before
      },                                           # and after each round (lower is faster)
      "setup": {"api_processes": 1, "worker_concurrency": 64,
                "backend_latency_ms": 20, "backend_concurrency": 64,
                "connections": 64, "seconds": 5, "rounds": 1},
      "paths": {                                   # any of: direct, proxied, cached, votes
        "proxied": {
          "requests_per_s": 1292.0, "p50_ms": 47.3, "p99_ms": 81.8, "rounds": 1,
          "cpu_ms_per_request": {"api": 0.30, "worker": 0.45, "writer": 0.0,
                                 "emulator": 0.15, "machine": 1.12},
          "sqs_calls_per_request": {"api": 0.21, "worker": 0.25, "writer": 0.0}
        }, ...
      }
    }

CPU is milliseconds per answered request (medians over the rounds), per process group,
from ``/proc``; SQS calls per request come from the processes' own
``queuefront_sqs_calls_total``. The simulator uses: api CPU of ``proxied`` (a queued
request), ``cached`` (a cache hit) and ``votes`` (an accepted vote); worker CPU of
``proxied`` (per message); writer CPU of ``votes`` (per stored item); the SQS calls of
``proxied`` and ``votes`` (for the cost). The machine's speed probe says how fast the cores
were; the simulator's ``vcpu_factor`` states how a Fargate vCPU compares (see the docs).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIGURES_PATH = ROOT / "bench" / "figures" / "throughput.json"
FORMAT = 1


class FiguresError(Exception):
    """The figures file is missing, of another format, or lacks a figure the simulator
    needs; the message says which and how to measure it."""


@dataclass(frozen=True)
class PathFigures:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    rounds: int
    cpu_ms_per_request: dict[str, float]
    sqs_calls_per_request: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ThroughputFigures:
    measured_at: str
    commit: str
    command: str
    machine: dict[str, Any]
    setup: dict[str, Any]
    paths: dict[str, PathFigures]
    format: int = FORMAT

    def save(self, path: Path = FIGURES_PATH) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path = FIGURES_PATH) -> ThroughputFigures:
        if not path.exists():
            raise FiguresError(f"{path} does not exist: run python -m bench.throughput")
        raw = json.loads(path.read_text())
        if raw.get("format") != FORMAT:
            raise FiguresError(f"{path}: format {raw.get('format')!r}, expected {FORMAT}")
        paths = {k: PathFigures(**v) for k, v in raw.pop("paths").items()}
        return cls(paths=paths, **raw)

    def cpu_s(self, path: str, group: str) -> float:
        """Seconds of CPU per request of ``group`` on ``path``."""
        if path not in self.paths:
            raise FiguresError(
                f"the figures have no {path!r} path: run python -m bench.throughput "
                f"--paths proxied cached votes"
            )
        cpu = self.paths[path].cpu_ms_per_request
        if group not in cpu:
            raise FiguresError(f"the figures' {path!r} path has no CPU of {group!r}")
        return cpu[group] / 1000.0

    def sqs_calls(self, path: str) -> float:
        """SQS calls per request on ``path``, all processes (0 when not measured)."""
        if path not in self.paths:
            return 0.0
        return sum(self.paths[path].sqs_calls_per_request.values())
