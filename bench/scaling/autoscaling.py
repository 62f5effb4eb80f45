"""ECS services and Application Auto Scaling, as the Terraform configures them.

**ECS.** A raised desired count starts tasks that serve after the task start time (AWS
constants: scheduling, Fargate capacity, ENI, image pull, container start) plus the
process's start, and for the api the ALB's health checks (interval x healthy threshold,
read from the edge module). A lowered one stops pending tasks first, then running ones,
which drain: the api for the ALB's deregistration delay, a worker until its calls end
(at most ``stop_timeout_s``), a writer its batch. Fargate bills a task from its start to
its stop.

**Target tracking** (Application Auto Scaling User Guide, "How target tracking works";
API reference, TargetTrackingScalingPolicyConfiguration): Application Auto Scaling keeps
two alarms per policy — above the target for 3 of 3 periods, below 90 % of it for 15 of
15 (bench/scaling/aws.py). While the high alarm is in ALARM it is invoked every period
and sets the capacity to ``ceil(capacity x metric / target)``; within the scale-out
cooldown the capacity that scale-out started from is used ("the capacity that has been
added by the previous scale out … is calculated as part of the desired capacity for the
next scale out") and only a larger result applies. Scale-in happens when the low alarm is
in ALARM, outside the scale-in cooldown, and every target tracking policy of the service
that may scale in is ready to; the largest of their capacities is kept. A scale-out ends
a scale-in cooldown. Insufficient data (a division by zero tasks) does nothing.

**Step scaling**: the alarm's aggregated value minus its threshold picks the step
(lower bound inclusive, upper exclusive); ``ChangeInCapacity``, ``ExactCapacity`` or
``PercentChangeInCapacity`` (fractions rounded toward zero, at least 1 when not zero,
at least ``MinAdjustmentMagnitude``). Cooldown as for target tracking, per policy. Step
policies are not blocked by target tracking's scale-in rule (AWS says so of mixing them).
Every result is clamped to the scalable target's min and max.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.scaling.aws import AwsConstants
from bench.scaling.cloudwatch import Alarm, MetricStore
from bench.scaling.terraform import ServiceSpec, StepPolicySpec, TargetTrackingSpec


@dataclass
class Task:
    launched_at: float
    ready_at: float
    stop_at: float | None = None
    by_scaling: bool = False

    def serving(self, now: float) -> bool:
        return self.ready_at <= now and self.stop_at is None

    def billed(self, now: float) -> bool:
        return self.launched_at <= now and (self.stop_at is None or now < self.stop_at)


@dataclass
class EcsService:
    spec: ServiceSpec
    start_s: Callable[[], float]
    """Draws one task's time from launch to serving."""
    drain_s: Callable[[float], float]
    """How long a stopping task drains, given the time."""
    min_tasks: int
    max_tasks: int
    desired: int = 0
    tasks: list[Task] = field(default_factory=list)
    task_seconds: float = 0.0
    spot_task_seconds: float = 0.0
    """Of task_seconds, on Fargate Spot (the capacity-provider split beyond the base)."""
    peak_tasks: int = 0
    first_scaled_serving_at: float | None = None
    desired_changes: int = 0
    _at: float = -1.0
    _serving: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    def start(self, n: int, now: float = 0.0) -> None:
        """Tasks already running at the start of the run."""
        self.desired = n
        self.tasks = [Task(now, now) for _ in range(n)]

    def set_desired(self, n: int, now: float, *, clamp: bool = True) -> None:
        if clamp:
            n = max(self.min_tasks, min(self.max_tasks, n))
        if n == self.desired:
            return
        self.desired_changes += 1
        self.desired = n
        self._at = -1.0
        live = [t for t in self.tasks if t.stop_at is None]
        if n > len(live):
            for _ in range(n - len(live)):
                self.tasks.append(Task(now, now + self.start_s(), by_scaling=True))
        else:
            # pending tasks first, then the youngest running ones
            order = sorted(live, key=lambda t: (t.ready_at <= now, t.ready_at), reverse=False)
            for task in order[: len(live) - n]:
                task.stop_at = now if task.ready_at > now else now + self.drain_s(now)

    def advance(self, now: float, dt: float) -> None:
        billed = sum(1 for t in self.tasks if t.billed(now))
        self.task_seconds += dt * billed
        beyond = max(0, billed - self.spec.on_demand_base)
        self.spot_task_seconds += dt * beyond * self.spec.spot_share
        self.tasks = [t for t in self.tasks if t.stop_at is None or t.stop_at > now]
        self._at, self._serving = now, sum(1 for t in self.tasks if t.serving(now))
        serving = self._serving
        self.peak_tasks = max(self.peak_tasks, serving)
        if self.first_scaled_serving_at is None and any(
            t.by_scaling and t.serving(now) for t in self.tasks
        ):
            self.first_scaled_serving_at = now

    def running(self, now: float) -> int:
        """Tasks serving (not pending, not draining)."""
        if now == self._at:
            return self._serving
        return sum(1 for t in self.tasks if t.serving(now))

    def running_incl_draining(self, now: float) -> int:
        """ECS's RunningTaskCount: draining tasks still run."""
        return sum(1 for t in self.tasks if t.ready_at <= now)

    def pending(self, now: float) -> int:
        return sum(1 for t in self.tasks if t.ready_at > now and t.stop_at is None)


def _round_change(x: float) -> int:
    """PercentChangeInCapacity's rounding: toward zero, but at least 1 unit when not 0."""
    if x == 0:
        return 0
    return int(math.copysign(max(1, math.floor(abs(x))), x))


class ScalableTarget:
    """One service's scalable target with its policies."""

    def __init__(self, service: EcsService) -> None:
        self.service = service
        self.tt: list[TargetTrackingPolicy] = []
        self.steps: list[StepPolicy] = []
        self.activities: list[tuple[float, str, int, int]] = []
        """(time, policy, from, to) of every scaling activity."""

    def apply(self, policy: str, capacity: int, now: float) -> bool:
        svc = self.service
        new = max(svc.min_tasks, min(svc.max_tasks, capacity))
        if new == svc.desired:
            return False
        self.activities.append((now, policy, svc.desired, new))
        svc.set_desired(new, now)
        return True


class TargetTrackingPolicy:
    def __init__(
        self,
        spec: TargetTrackingSpec,
        target: ScalableTarget,
        store: MetricStore,
        aws: AwsConstants,
    ) -> None:
        self.spec = spec
        self.target = target
        n_high, n_low = aws.target_tracking_high_datapoints, aws.target_tracking_low_datapoints
        # the alarms Application Auto Scaling creates; "Latest": it scales on the last value
        self.high = Alarm(
            f"{spec.name}-AlarmHigh",
            spec.queries,
            "GreaterThanThreshold",
            spec.target,
            n_high,
            n_high,
            "missing",
            spec.period_s,
            store,
            "Latest",
        )
        self.low = Alarm(
            f"{spec.name}-AlarmLow",
            spec.queries,
            "LessThanThreshold",
            spec.target * aws.target_tracking_low_ratio,
            n_low,
            n_low,
            "missing",
            spec.period_s,
            store,
            "Latest",
        )
        self.out_until = -math.inf
        self.out_base = 0
        self.in_until = -math.inf

    @property
    def period_s(self) -> float:
        return self.spec.period_s

    def want(self, capacity: int, metric: float) -> int:
        return math.ceil(capacity * metric / self.spec.target - 1e-9)

    def evaluate(self, now: float) -> None:
        high, low = self.high.evaluate(now), self.low.evaluate(now)
        svc = self.target.service
        if high.state == "ALARM" and high.value is not None:
            base = self.out_base if now < self.out_until else svc.desired
            want = self.want(base, high.value)
            if want > svc.desired and self.target.apply(self.spec.name, want, now):
                if now >= self.out_until:
                    self.out_base = base
                self.out_until = now + self.spec.scale_out_cooldown_s
                for p in self.target.tt:  # a scale-out ends scale-in cooldowns
                    p.in_until = -math.inf
            return
        if low.state == "ALARM" and low.value is not None and not self.spec.disable_scale_in:
            if now < self.in_until:
                return
            wants = [self.want(svc.desired, low.value)]
            for other in self.target.tt:
                if other is self or other.spec.disable_scale_in:
                    continue
                if other.low.status.state != "ALARM" or other.low.status.value is None:
                    return  # every target tracking policy must be ready to scale in
                wants.append(other.want(svc.desired, other.low.status.value))
            want = max(wants)
            if want < svc.desired and self.target.apply(self.spec.name, want, now):
                for p in self.target.tt:
                    p.in_until = now + p.spec.scale_in_cooldown_s


class StepPolicy:
    def __init__(self, spec: StepPolicySpec, target: ScalableTarget, store: MetricStore) -> None:
        self.spec = spec
        self.target = target
        self.alarm = Alarm.from_spec(spec.alarm, store, spec.aggregation)
        self.out_until = -math.inf
        self.out_base = 0
        self.in_until = -math.inf

    @property
    def period_s(self) -> float:
        return self.spec.alarm.period_s

    def capacity(self, current: int, breach: float) -> int | None:
        # "If the metric value is above the breach threshold, the lower bound is inclusive
        # and the upper bound is exclusive. If below, the lower bound is exclusive and the
        # upper bound inclusive" (Application Auto Scaling, StepAdjustment); an alarm on
        # LessThan… breaches at or below its threshold
        below = self.alarm.comparison.startswith("LessThan")
        for step in self.spec.steps:
            lo = -math.inf if step.lower is None else step.lower
            hi = math.inf if step.upper is None else step.upper
            if (lo < breach <= hi) if below else (lo <= breach < hi):
                kind, adj = self.spec.adjustment_type, step.adjustment
                if kind == "ExactCapacity":
                    return int(adj)
                if kind == "ChangeInCapacity":
                    return current + int(adj)
                if kind == "PercentChangeInCapacity":
                    change = _round_change(current * adj / 100)
                    floor = self.spec.min_adjustment_magnitude or 0
                    if change and abs(change) < floor:
                        change = int(math.copysign(floor, change))
                    return current + change
                raise ValueError(f"{self.spec.name}: adjustment type {kind} is not simulated")
        return None

    def evaluate(self, now: float) -> None:
        status = self.alarm.evaluate(now)
        if status.state != "ALARM" or status.value is None:
            return
        svc = self.target.service
        breach = status.value - self.alarm.threshold
        base = self.out_base if now < self.out_until else svc.desired
        want = self.capacity(base, breach)
        if want is None:
            return
        # a step that adds to the base is a scale-out: within its cooldown it only ever
        # raises the count (the base already counts what the last scale-out added); one
        # that takes from it is a scale-in
        if want > base:
            applied = want > svc.desired and self.target.apply(self.spec.name, want, now)
            if applied and now >= self.out_until:
                self.out_base = base
                self.out_until = now + self.spec.cooldown_s
        elif (
            want < base
            and want < svc.desired
            and now >= self.in_until
            and self.target.apply(self.spec.name, want, now)
        ):
            self.in_until = now + self.spec.cooldown_s


class AutoScaling:
    """Every scalable target and policy; ``tick`` evaluates the alarms that are due."""

    def __init__(self, targets: Sequence[ScalableTarget], offset_rng: random.Random) -> None:
        self.targets = list(targets)
        self._schedule: list[tuple[float, float, TargetTrackingPolicy | StepPolicy]] = []
        for target in self.targets:
            policies: list[TargetTrackingPolicy | StepPolicy] = [*target.tt, *target.steps]
            for p in policies:
                every = min(p.period_s, 60.0)
                self._schedule.append((offset_rng.uniform(0, every), every, p))
        self._next = [first for first, _, _ in self._schedule]

    def tick(self, now: float) -> None:
        for i, (_, every, policy) in enumerate(self._schedule):
            while self._next[i] <= now:
                policy.evaluate(now)
                self._next[i] += every
