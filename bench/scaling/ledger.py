"""Where every request ended: the counters the report and the conservation checks read.

Per client class: offered, answered, shed (a fast refusal: API Gateway's 429, the api's
503, an overfull listen backlog), timed out (a 504: the route's window or API Gateway's
30 s passed) and lost (the system dropped it: must stay 0). What is neither is still in the
system at the end — in an api's listen backlog, in a queue, at a worker.
"""

from __future__ import annotations

import math
from collections import defaultdict


class Ledger:
    def __init__(self) -> None:
        self.offered: dict[str, int] = defaultdict(int)
        self.answered: dict[str, int] = defaultdict(int)
        self.shed: dict[str, int] = defaultdict(int)
        self.shed_reasons: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.timed_out: dict[str, int] = defaultdict(int)
        self.lost: dict[str, int] = defaultdict(int)
        self._latencies: dict[str, list[tuple[float, int]]] = defaultdict(list)
        # per-step figures for the time series (reset by the simulator every step)
        self.step_offered: dict[str, int] = defaultdict(int)
        self.step_answered: dict[str, int] = defaultdict(int)
        self.step_shed: dict[str, int] = defaultdict(int)
        self.step_latencies: list[tuple[float, int]] = []

    def offer(self, cls: str, n: int) -> None:
        self.offered[cls] += n
        self.step_offered[cls] += n

    def answer(self, cls: str, n: int, latency_s: float | None = None) -> None:
        if n <= 0:
            return
        self.answered[cls] += n
        self.step_answered[cls] += n
        if latency_s is not None:
            self._latencies[cls].append((latency_s, n))
            if cls == "queued":
                self.step_latencies.append((latency_s, n))

    def refuse(self, cls: str, n: int, reason: str) -> None:
        if n <= 0:
            return
        self.shed[cls] += n
        self.step_shed[cls] += n
        self.shed_reasons[cls][reason] += n

    def time_out(self, cls: str, n: int) -> None:
        if n > 0:
            self.timed_out[cls] += n

    def lose(self, cls: str, n: int) -> None:
        if n > 0:
            self.lost[cls] += n

    def new_step(self) -> None:
        self.step_offered.clear()
        self.step_answered.clear()
        self.step_shed.clear()
        self.step_latencies = []

    def percentile(self, cls: str, q: float) -> float | None:
        return weighted_percentile(self._latencies.get(cls, []), q)


def weighted_percentile(samples: list[tuple[float, int]], q: float) -> float | None:
    """The q-quantile (0..1) of values given with counts; None without samples."""
    total = sum(n for _, n in samples)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for value, n in sorted(samples):
        seen += n
        if seen >= rank:
            return value
    return sorted(samples)[-1][0]
