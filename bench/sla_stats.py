"""What one level of the SLA benchmark amounts to, and whether it passed.

The kiosk seed's method: N requests spread evenly over a window (60 s); a level PASSES
when every one of the N requests is answered 2xx and the last answer arrives inside the
window. "The window" here is the sending window plus the route's reply window (20 s in
config/routes.toml): the last request leaves at the end of the sending window and a
kiosk waits the reply window for its answer, so that is when the level's last answer is
due. Times are measured from the first request's *scheduled* time, and every latency
from its request's scheduled time (a late send counts against the server, never for it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.measure import percentile
from bench.openloop import OpenLoopResult

NO_ANSWER = ("connect_error", "reset", "timeout", "connect_timeout", "no_connection")
"""Outcomes without an HTTP answer (:class:`bench.openloop.Failure`, by name)."""
CONNECTION_ERRORS = ("connect_error", "reset", "connect_timeout")


@dataclass
class LevelSummary:
    """One path at one offered level: the seed's row plus what overload analysis needs."""

    path: str
    level_per_min: int
    window_s: float
    reply_window_s: float
    n: int
    sent: int
    ok: int
    outcomes: dict[str, int]
    p50_ms: float
    p99_ms: float
    last_answer_s: float
    last_ok_s: float
    p99_503_ms: float
    send_lag_p99_ms: float
    dispatch_lag_p99_ms: float
    gen_cpu_us_per_request: float
    connections_opened: int
    cpu_cores: dict[str, float] = field(default_factory=dict)
    load_average: float = math.nan

    @property
    def passed(self) -> bool:
        """Every request answered 2xx, the last answer inside window + reply window."""
        return self.ok == self.n and self.last_answer_s <= self.window_s + self.reply_window_s

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    @property
    def offered_per_s(self) -> float:
        return self.n / self.window_s

    @property
    def goodput_per_s(self) -> float:
        """2xx answers per second over the time they took to arrive: the sending window,
        or until the last 2xx if that came later (a backlog drained after the window
        does not count as if it had been served inside it)."""
        if not self.ok:
            return 0.0
        return self.ok / max(self.window_s, self.last_ok_s)

    def share(self, *outcomes: str) -> float:
        return sum(self.outcomes.get(o, 0) for o in outcomes) / self.n

    def count(self, *outcomes: str) -> int:
        return sum(self.outcomes.get(o, 0) for o in outcomes)

    def others(self) -> str:
        """Everything that was not a 2xx, e.g. ``503: 1,204, reset: 3``."""
        rest = sorted(
            (o, c) for o, c in self.outcomes.items() if not (o.isdigit() and o.startswith("2"))
        )
        return ", ".join(f"{o}: {c:,}" for o, c in rest) or "-"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def summarize(
    path: str, level_per_min: int, reply_window_s: float, result: OpenLoopResult
) -> LevelSummary:
    """Reduces one run's per-request records to its row."""
    ok_lat: list[float] = []
    lat_503: list[float] = []
    last = last_ok = -math.inf
    for i in range(result.n):
        status = result.status[i]
        if status <= 0:
            continue
        latency = result.end[i] - result.scheduled(i)
        last = max(last, result.end[i])
        if 200 <= status < 300:
            ok_lat.append(latency)
            last_ok = max(last_ok, result.end[i])
        elif status == 503:
            lat_503.append(latency)
    outcomes = dict(result.outcomes())
    return LevelSummary(
        path=path,
        level_per_min=level_per_min,
        window_s=result.window_s,
        reply_window_s=reply_window_s,
        n=result.n,
        sent=sum(1 for s in result.sent if not math.isnan(s)),
        ok=len(ok_lat),
        outcomes=outcomes,
        p50_ms=percentile(ok_lat, 0.50) * 1000,
        p99_ms=percentile(ok_lat, 0.99) * 1000,
        last_answer_s=last if last > -math.inf else math.nan,
        last_ok_s=last_ok if last_ok > -math.inf else math.nan,
        p99_503_ms=percentile(lat_503, 0.99) * 1000,
        send_lag_p99_ms=percentile(result.send_lag_s(), 0.99) * 1000,
        dispatch_lag_p99_ms=percentile(result.dispatch_lag_s, 0.99) * 1000,
        gen_cpu_us_per_request=result.cpu_us_per_request,
        connections_opened=result.connections_opened,
    )


@dataclass(frozen=True)
class Target:
    name: str
    met: bool
    measured: str


def overload_targets(row: LevelSummary, capacity_per_s: float) -> list[Target]:
    """The issue's targets at twice capacity: goodput, no 5xx crashes, fast 503s, few 504s."""
    goodput = row.goodput_per_s / capacity_per_s if capacity_per_s else math.nan
    crashes = row.count("500", "502")
    no_answer = row.count(*NO_ANSWER)
    share_504 = row.share("504")
    p99_503 = row.p99_503_ms
    return [
        Target("goodput ≥ 90 % of capacity", goodput >= 0.9, f"{goodput:.0%}"),
        Target("no 500/502 answers", crashes == 0, f"{crashes:,}"),
        Target(
            "every request answered (no connection errors or client time-outs)",
            no_answer == 0,
            f"{no_answer:,}",
        ),
        Target(
            "503s answered within 100 ms (p99)",
            math.isnan(p99_503) or p99_503 <= 100,
            "no 503s" if math.isnan(p99_503) else f"{p99_503:.0f} ms",
        ),
        Target("504s ≤ 1 % of requests", share_504 <= 0.01, f"{share_504:.2%}"),
    ]
