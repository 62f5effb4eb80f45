"""Scenario files: the load over time, the backend, and what a run changes.

::

    name = "kiosk-black-friday"
    duration_s = 1800
    step_s = 1            # optional, at most 1 (the simulator's time step)
    seed = 1              # optional: draws of AWS's delays and task start times
    starts_at = "2026-11-27T07:00:00Z"  # optional: the wall time of t = 0, which places
                          # the policy's scheduled actions (scaling_events) in the run

    [backend]
    slots = 400           # calls at once before it degrades
    service_s = 1.6       # per call at or below the knee
    collapse = false      # optional: past the knee, service time grows like the demo
    knee = 400            # optional (default: slots): calls in flight where collapse starts
    [[backend.phases]]    # optional: the service time from at_s on (a brownout)
    at_s = 600
    service_s = 16.0

    [mix]                 # optional; defaults shown
    high_share = 0.0            # share of queued requests on high-priority routes
    cached_miss_ratio = 0.0     # share of cached requests that go to the queue (the
                                # priority of the route table's cached routes)
    edge_objects = 1            # distinct edge-cached URLs: each refreshed once per edge_ttl_s
    edge_ttl_s = 3              # their s-maxage (the route table's edge_ttl_s)

    [routes]              # optional: API Gateway route key per class (its throttle)
    high = "POST /api/login"
    normal = "$default"
    cached = "$default"
    ingest = "POST /api/polls/{poll_id}/votes"

    [terraform]           # optional: tfvars overrides, as --set (which wins over these)
    worker_max_tasks = 6
    "settings.worker_concurrency" = 20

    [model]               # optional: the simulator's own constants (bench/scaling/model.py)
    [aws]                 # optional: AWS constants (bench/scaling/aws.py)

    [[load]]              # piecewise linear in time; a class left out is 0
    at_s = 0
    queued_rps = 20
    cached_rps = 140
    [[load]]              # two points at the same at_s make a step
    at_s = 120
    queued_rps = 60

Rates are requests per second offered by clients: queued (proxied through SQS, high and
normal), cached (answered by the api from its cache; ``cached_miss_ratio`` of them go to
the queue their routes name in the production route table: ``cached_miss_priority``),
edge (answered by CloudFront from its cache), ingest (votes, one item each).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from bench.scaling.model import Priority
from queuefront.routes import load_routes

CLASSES = ("queued", "cached", "edge", "ingest")
MAX_STEP_S = 1.0


class ScenarioError(ValueError):
    """The scenario file is malformed; the message names the key."""


@dataclass(frozen=True)
class LoadPoint:
    at_s: float
    rps: Mapping[str, float]


@dataclass(frozen=True)
class BackendPhase:
    at_s: float
    service_s: float


@dataclass(frozen=True)
class Backend:
    slots: int
    service_s: float
    collapse: bool = False
    knee: int = 0
    phases: tuple[BackendPhase, ...] = ()

    def service_at(self, t: float) -> float:
        """Service time per call at or below the knee, at time ``t``."""
        current = self.service_s
        for phase in self.phases:
            if phase.at_s <= t:
                current = phase.service_s
        return current


@dataclass(frozen=True)
class Mix:
    high_share: float = 0.0
    cached_miss_ratio: float = 0.0
    edge_objects: int = 1
    edge_ttl_s: float = 3.0


DEFAULT_ROUTES = {
    # the production route table (config/routes.toml) and the Terraform's route throttles
    "high": "POST /api/login",
    "normal": "$default",
    "cached": "$default",
    "ingest": "POST /api/polls/{poll_id}/votes",
}

ROUTE_TABLE = Path(__file__).resolve().parents[2] / "config" / "routes.toml"
"""The production route table: the image's /app/config/routes.toml, which Terraform's
``settings.routes_file`` names."""


def cached_miss_priority(path: Path = ROUTE_TABLE) -> Priority:
    """The queue a cached request's miss goes to: the priority most of the table's cached
    routes have (a tie: normal). The simulator has one cached class; the table says where
    its misses wait — a miss fills the cache for every request of its key for the entry's
    lifetime, so the shipped table puts cached routes on the high queue."""
    cached = [r.priority for r in load_routes(path).routes if r.cache is not None]
    return "high" if cached.count("high") > cached.count("normal") else "normal"


@dataclass(frozen=True)
class Scenario:
    name: str
    duration_s: float
    backend: Backend
    load: tuple[LoadPoint, ...]
    step_s: float = 1.0
    seed: int = 1
    mix: Mix = Mix()
    routes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ROUTES))
    terraform: Mapping[str, Any] = field(default_factory=dict)
    model: Mapping[str, Any] = field(default_factory=dict)
    aws: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    starts_at: datetime | None = None
    """Wall time (UTC) of t = 0; None: the run is not placed in time, and a policy with
    scheduled actions cannot be run."""

    def at_s(self, when: datetime) -> float:
        """Seconds from the run's start to ``when``."""
        if self.starts_at is None:
            raise ScenarioError(
                f"{self.name}: the policy schedules scaling at {when.isoformat()}: give the "
                "scenario starts_at (the wall time of t = 0)"
            )
        return (when - self.starts_at).total_seconds()

    # --- the load profile ------------------------------------------------------------

    def rate(self, cls: str, t: float) -> float:
        """Offered requests/s of ``cls`` at ``t`` (right-continuous at a step)."""
        pts = self.load
        if t < pts[0].at_s:
            return 0.0
        for a, b in pairwise(pts):
            if a.at_s <= t < b.at_s:
                span = b.at_s - a.at_s
                w = (t - a.at_s) / span
                return a.rps[cls] + w * (b.rps[cls] - a.rps[cls])
        return pts[-1].rps[cls]

    def cumulative(self, cls: str, t: float) -> float:
        """Requests of ``cls`` offered in [0, t): the integral of the rate."""
        total, pts = 0.0, self.load
        for a, b in pairwise(pts):
            if t <= a.at_s:
                return total
            end = min(t, b.at_s)
            span = b.at_s - a.at_s
            if span > 0:
                r_end = a.rps[cls] + (end - a.at_s) / span * (b.rps[cls] - a.rps[cls])
                total += (end - a.at_s) * (a.rps[cls] + r_end) / 2
            if t <= b.at_s:
                return total
        last = pts[-1]
        return total + max(0.0, t - max(last.at_s, pts[0].at_s)) * last.rps[cls]

    def changes_s(self) -> tuple[float, ...]:
        """When the offered load changes course (a step, the start or the end of a ramp) or
        the backend's service time changes: where the criteria give the system a minute
        (bench/scaling/criteria.py). The run's start is not one: the load before the first
        point is taken to be the first point's."""
        out: set[float] = {p.at_s for p in self.backend.phases}
        segments = [(a, b) for a, b in pairwise(self.load) if b.at_s > a.at_s]

        def slope(a: LoadPoint, b: LoadPoint) -> dict[str, float]:
            return {c: (b.rps[c] - a.rps[c]) / (b.at_s - a.at_s) for c in CLASSES}

        flat = {c: 0.0 for c in CLASSES}
        for t in sorted({p.at_s for p in self.load}):
            left = [(a, b) for a, b in segments if b.at_s == t]
            right = [(a, b) for a, b in segments if a.at_s == t]
            if left:
                value_before, slope_before = dict(left[-1][1].rps), slope(*left[-1])
            else:
                value_before = dict(self.load[0].rps) if t == self.load[0].at_s else {}
                slope_before = flat
                if t != self.load[0].at_s:
                    value_before = {c: self.rate(c, t - 1e-9) for c in CLASSES}
            value_after = {c: self.rate(c, t) for c in CLASSES}
            slope_after = slope(*right[0]) if right else flat
            if value_before != value_after or slope_before != slope_after:
                out.add(t)
        return tuple(sorted(out))

    def first_step_up_s(self) -> float | None:
        """When the offered load first starts to rise (a ramp or a step up)."""
        pts = self.load
        for a, b in pairwise(pts):
            if sum(b.rps.values()) > sum(a.rps.values()):
                return a.at_s
        return None


def _num(table: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = table.get(key, default)
    if value is None:
        raise ScenarioError(f"{where}: {key} is required")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def parse(raw: Mapping[str, Any], source: str = "<scenario>") -> Scenario:
    known = {
        "name",
        "description",
        "duration_s",
        "step_s",
        "seed",
        "backend",
        "mix",
        "routes",
        "terraform",
        "model",
        "aws",
        "load",
        "starts_at",
    }
    unknown = set(raw) - known
    if unknown:
        raise ScenarioError(f"{source}: unknown keys {sorted(unknown)}")
    b = raw.get("backend")
    if not isinstance(b, Mapping):
        raise ScenarioError(f"{source}: [backend] is required")
    slots = int(_num(b, "slots", "[backend]"))
    phases = tuple(
        BackendPhase(
            _num(p, "at_s", "[[backend.phases]]"), _num(p, "service_s", "[[backend.phases]]")
        )
        for p in b.get("phases", [])
    )
    backend = Backend(
        slots=slots,
        service_s=_num(b, "service_s", "[backend]"),
        collapse=bool(b.get("collapse", False)),
        knee=int(_num(b, "knee", "[backend]", slots)),
        phases=tuple(sorted(phases, key=lambda p: p.at_s)),
    )
    if slots < 1 or backend.service_s <= 0 or backend.knee < 1:
        raise ScenarioError(f"{source}: [backend] slots, knee and service_s must be positive")
    points = []
    for i, p in enumerate(raw.get("load", [])):
        extra = set(p) - {"at_s", *(f"{c}_rps" for c in CLASSES)}
        if extra:
            raise ScenarioError(f"{source}: [[load]] #{i + 1} has unknown keys {sorted(extra)}")
        rps = {c: _num(p, f"{c}_rps", f"[[load]] #{i + 1}", 0.0) for c in CLASSES}
        if any(v < 0 for v in rps.values()):
            raise ScenarioError(f"{source}: [[load]] #{i + 1}: rates must not be negative")
        points.append(LoadPoint(_num(p, "at_s", f"[[load]] #{i + 1}"), rps))
    if not points:
        raise ScenarioError(f"{source}: at least one [[load]] point is required")
    if any(b.at_s < a.at_s for a, b in pairwise(points)):
        raise ScenarioError(f"{source}: [[load]] points must be in time order")
    m = raw.get("mix", {})
    mix = Mix(
        high_share=_num(m, "high_share", "[mix]", 0.0),
        cached_miss_ratio=_num(m, "cached_miss_ratio", "[mix]", 0.0),
        edge_objects=int(_num(m, "edge_objects", "[mix]", 1)),
        edge_ttl_s=_num(m, "edge_ttl_s", "[mix]", 3.0),
    )
    if not (0 <= mix.high_share <= 1 and 0 <= mix.cached_miss_ratio <= 1):
        raise ScenarioError(f"{source}: [mix] shares must be within 0..1")
    step = _num(raw, "step_s", source, 1.0)
    if not 0 < step <= MAX_STEP_S:
        raise ScenarioError(f"{source}: step_s must be in (0, {MAX_STEP_S}]")
    starts_at = None
    if "starts_at" in raw:
        try:
            value = raw["starts_at"]
            starts_at = (
                value
                if isinstance(value, datetime)
                else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            )
        except ValueError:
            raise ScenarioError(f"{source}: starts_at must be an ISO 8601 time") from None
        if starts_at.tzinfo is None:
            raise ScenarioError(f"{source}: starts_at needs a time zone (…Z for UTC)")
        starts_at = starts_at.astimezone(UTC)
    return Scenario(
        name=str(raw.get("name", Path(source).stem)),
        starts_at=starts_at,
        description=str(raw.get("description", "")),
        duration_s=_num(raw, "duration_s", source),
        step_s=step,
        seed=int(raw.get("seed", 1)),
        backend=backend,
        load=tuple(points),
        mix=mix,
        routes={**DEFAULT_ROUTES, **raw.get("routes", {})},
        terraform=dict(raw.get("terraform", {})),
        model=dict(raw.get("model", {})),
        aws=dict(raw.get("aws", {})),
    )


def load(path: Path) -> Scenario:
    with path.open("rb") as f:
        return parse(tomllib.load(f), str(path))
