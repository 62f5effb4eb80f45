"""What a policy must hold on a scenario — the criteria the shipped scenarios are run
against (docs/benchmarks.md, "Scaling"):

- ``lost``: nothing is lost (every request answered, refused, timed out or still in the
  system at the end; every accepted vote stored or still queued);
- ``no_timeouts``: every request that needs the backend (queued, a cached route's miss)
  is answered in its window or refused at once — no 504;
- ``goodput``: in every minute that starts at least ``GRACE_S`` after the load or the
  backend changed course, what the backend answered in time is at least
  ``GOODPUT_SHARE`` of what it could have served (the smaller of what needed it and its
  capacity, slots ÷ service time);
- ``edge`` and ``cached``: at least ``ANSWERED_SHARE`` of the edge-cached and cached
  requests answered; ``ingest``: as many of the votes accepted (not in the issue's list:
  a vote refused is a viewer's vote lost to the show);
- ``first_scale_out``: the first task added after the first step-up serves within
  ``FIRST_SCALE_OUT_S`` (none added: the capacity was there).

Refusals are fast by construction in the simulator: API Gateway's 429, an overfull listen
backlog, admission's 503 (the high-backlog rule waits at most ``QF_ADMISSION_WAIT_S``); a
request that waited too long anywhere is a 504, which ``no_timeouts`` counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

GRACE_S = 60.0
GOODPUT_SHARE = 0.95
ANSWERED_SHARE = 0.999
FIRST_SCALE_OUT_S = 60.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 1.0


def checked_minutes(
    minutes: Sequence[dict[str, Any]], changes_s: Sequence[float]
) -> list[dict[str, Any]]:
    """The minutes the goodput criterion applies to: none overlapping [change, change +
    GRACE_S), and only those in which something needed the backend."""
    out = []
    for m in minutes:
        start = 60.0 * m["minute"]
        end = start + 60.0
        if any(c < end and start < c + GRACE_S for c in changes_s):
            continue
        if m["backend_offered"] > 0:
            out.append(m)
    return out


def could_serve(minute: dict[str, Any]) -> float:
    return float(min(minute["backend_offered"], minute["backend_capacity"]))


def evaluate(result: dict[str, Any], changes_s: Sequence[float]) -> list[Check]:
    r = result
    checks = [
        Check("lost", r["lost"] == 0, f"{r['lost']} lost"),
    ]
    timeouts = r["timed_out_by_class"]["queued"] + r["timed_out_by_class"]["cached"]
    checks.append(
        Check(
            "no_timeouts",
            timeouts == 0,
            f"{timeouts} 504s (queued {r['timed_out_by_class']['queued']}, cached misses "
            f"{r['timed_out_by_class']['cached']})",
        )
    )
    worst: tuple[float, int] | None = None
    for m in checked_minutes(r["minutes"], changes_s):
        share = _share(m["backend_answered"], could_serve(m))
        if worst is None or share < worst[0]:
            worst = (share, m["minute"])
    checks.append(
        Check(
            "goodput",
            worst is None or worst[0] >= GOODPUT_SHARE,
            "no minute to check"
            if worst is None
            else f"worst minute {worst[1]}: {worst[0]:.1%} of what the backend could serve",
        )
    )
    for cls in ("edge", "cached", "ingest"):
        offered = r["offered"][cls] - r["in_system_at_end"][cls]
        share = _share(r["answered"][cls], offered)
        checks.append(
            Check(cls, share >= ANSWERED_SHARE, f"{share:.3%} of {r['offered'][cls]:,} answered")
        )
    first = r["first_scale_out_s"]
    checks.append(
        Check(
            "first_scale_out",
            first is None or first <= FIRST_SCALE_OUT_S,
            "no task added after the first step-up" if first is None else f"{first:.0f} s",
        )
    )
    return checks


def as_json(checks: Sequence[Check]) -> dict[str, Any]:
    return {
        "ok": all(c.ok for c in checks),
        "checks": {c.name: {k: v for k, v in asdict(c).items() if k != "name"} for c in checks},
    }
