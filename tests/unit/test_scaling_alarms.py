"""The scaling loop's semantics, one rule at a time: target tracking's alarms (3 of 3
datapoints to scale out, 15 of 15 to scale in, below 90 % of the target), its cooldowns,
step scaling's adjustments, CloudWatch's evaluation range, publication delays and metric
math — on hand-fed metrics, so each test states its datapoints."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from bench.scaling.autoscaling import (
    AutoScaling,
    EcsService,
    ScalableTarget,
    StepPolicy,
    TargetTrackingPolicy,
)
from bench.scaling.aws import AwsConstants
from bench.scaling.cloudwatch import Alarm, MetricStore, evaluate_math, key_of
from bench.scaling.terraform import (
    AlarmSpec,
    MetricQuery,
    MetricStat,
    ServiceSpec,
    StepAdjustment,
    StepPolicySpec,
    TargetTrackingSpec,
)

PERIOD = 60.0
AWS = AwsConstants(emf_publication_delay_s=(0.0, 0.0))
METRIC = MetricStat("Test", "load", (), "Average", PERIOD)


def service(desired: int, lo: int = 1, hi: int = 100) -> EcsService:
    spec = ServiceSpec("worker", 1024, 2048, lo, hi, desired, 0, 0.0, {})
    svc = EcsService(spec, lambda: 0.0, lambda now: 0.0, lo, hi)
    svc.start(desired)
    return svc


def tt_policy(
    svc: EcsService, target: float = 100.0, out_cd: float = 60.0, in_cd: float = 300.0
) -> tuple[TargetTrackingPolicy, MetricStore]:
    store = MetricStore(AWS, seed=1, step_s=PERIOD)
    spec = TargetTrackingSpec(
        "tt",
        "worker",
        target,
        out_cd,
        in_cd,
        False,
        (MetricQuery("m", METRIC, None, True),),
        PERIOD,
    )
    scalable = ScalableTarget(svc)
    policy = TargetTrackingPolicy(spec, scalable, store, AWS)
    scalable.tt.append(policy)
    return policy, store


def feed(store: MetricStore, values: list[float], stat: MetricStat = METRIC) -> None:
    for v in values:
        store.record(key_of(stat), v)


def evaluate_each_minute(policy: TargetTrackingPolicy | StepPolicy, minutes: int) -> list[int]:
    """Desired count after each evaluation at the end of minutes 1..minutes."""
    out = []
    for k in range(1, minutes + 1):
        policy.evaluate(k * PERIOD)
        out.append(policy.target.service.desired)
    return out


def test_target_tracking_scales_out_after_three_datapoints_in_a_row() -> None:
    svc = service(2)
    policy, store = tt_policy(svc)
    feed(store, [150, 150, 50, 150, 150, 150])
    # a dip resets the count: only the third breaching datapoint in a row acts, sized
    # ceil(capacity x metric / target) = ceil(2 x 1.5) = 3
    assert evaluate_each_minute(policy, 6) == [2, 2, 2, 2, 2, 3]


def test_target_tracking_scales_in_after_fifteen_datapoints_below_ninety_percent() -> None:
    svc = service(20)
    policy, store = tt_policy(svc, in_cd=0.0)
    feed(store, [91.0] * 20)  # below the target, not below 90 % of it: never
    assert evaluate_each_minute(policy, 20)[-1] == 20
    svc2 = service(10)
    policy2, store2 = tt_policy(svc2, in_cd=0.0)
    feed(store2, [40.0] * 16)
    desired = evaluate_each_minute(policy2, 16)
    assert desired[13] == 10 and desired[14] == 4  # 15th datapoint: ceil(10 x 0.4)


def test_scale_out_cooldown_only_lets_a_larger_scale_out_through() -> None:
    svc = service(4)
    policy, store = tt_policy(svc, out_cd=300.0)
    feed(store, [200, 200, 200, 200, 300, 300, 300, 300, 300, 300, 300])
    desired = evaluate_each_minute(policy, 11)
    assert desired[2] == 8  # ceil(4 x 2)
    # within the cooldown the capacity it started from (4) counts: x2 again is not larger
    assert desired[3] == 8
    # a larger need during the cooldown goes through: ceil(4 x 3) = 12
    assert desired[4] == 12
    # once the cooldown is over, the base is the current capacity: ceil(12 x 3) = 36
    assert desired[-1] == 36


def test_scale_in_cooldown_blocks_the_next_scale_in_and_a_scale_out_ends_it() -> None:
    svc = service(20)
    policy, store = tt_policy(svc, out_cd=0.0, in_cd=3600.0)
    feed(store, [50.0] * 17 + [300.0] * 3 + [50.0] * 15)
    desired = evaluate_each_minute(policy, 35)
    assert desired[14] == 10  # 15 low datapoints: ceil(20 x 0.5)
    assert desired[16] == 10  # still low, but within the scale-in cooldown
    assert desired[19] == 30  # 3 high ones: ceil(10 x 3)
    # 15 low again, 20 minutes after the first scale-in: the scale-out ended its cooldown
    assert desired[34] == 15


def test_insufficient_data_does_nothing() -> None:
    svc = service(3)
    store = MetricStore(AWS, seed=1, step_s=PERIOD)
    spec = TargetTrackingSpec(
        "tt",
        "worker",
        100.0,
        60,
        300,
        False,
        (
            MetricQuery("a", METRIC, None, False),
            MetricQuery("t", MetricStat("Test", "tasks", (), "Average", PERIOD), None, False),
            MetricQuery("m", None, "a / t", True),
        ),
        PERIOD,
    )
    scalable = ScalableTarget(svc)
    ratio = TargetTrackingPolicy(spec, scalable, store, AWS)
    feed(store, [500.0] * 5)
    feed(store, [0.0] * 5, MetricStat("Test", "tasks", (), "Average", PERIOD))
    assert evaluate_each_minute(ratio, 5) == [3] * 5  # x / 0 tasks: no datapoint, no action
    assert ratio.high.status.state == "INSUFFICIENT_DATA"


def step_policy(
    svc: EcsService,
    kind: str,
    steps: list[StepAdjustment],
    *,
    threshold: float,
    comparison: str = "GreaterThanOrEqualToThreshold",
    n: int = 1,
    cooldown: float = 60.0,
    magnitude: float | None = None,
) -> tuple[StepPolicy, MetricStore]:
    store = MetricStore(AWS, seed=1, step_s=PERIOD)
    alarm = AlarmSpec(
        "a",
        (MetricQuery("m", METRIC, None, True),),
        comparison,
        threshold,
        n,
        n,
        "notBreaching",
        PERIOD,
    )
    spec = StepPolicySpec(
        "step", "worker", kind, tuple(steps), cooldown, magnitude, "Maximum", alarm
    )
    return StepPolicy(spec, ScalableTarget(svc), store), store


def test_percent_steps_round_toward_zero_with_a_minimum() -> None:
    steps = [StepAdjustment(0, 40, 25), StepAdjustment(40, None, 50)]
    svc = service(3)
    policy, store = step_policy(
        svc, "PercentChangeInCapacity", steps, threshold=10, cooldown=0.0, magnitude=1
    )
    feed(store, [15, 60, 5])
    # 3 +25 % = 0.75 -> at least 1 -> 4; then 4 +50 % = 2 -> 6 (breach 50 >= 40); then below
    assert evaluate_each_minute(policy, 3) == [4, 6, 6]


def test_exact_capacity_below_the_threshold_uses_the_inclusive_upper_bound() -> None:
    svc = service(3, lo=0)
    policy, store = step_policy(
        svc,
        "ExactCapacity",
        [StepAdjustment(None, 0, 0)],
        threshold=0,
        comparison="LessThanOrEqualToThreshold",
        n=2,
        cooldown=0.0,
    )
    feed(store, [5, 0, 0])
    assert evaluate_each_minute(policy, 3) == [3, 3, 0]


def test_the_evaluation_range_uses_late_datapoints_once_they_are_published() -> None:
    aws = AwsConstants(emf_publication_delay_s=(90.0, 90.0))
    store = MetricStore(aws, seed=1, step_s=PERIOD)
    alarm = Alarm(
        "a",
        [MetricQuery("m", METRIC, None, True)],
        "GreaterThanThreshold",
        10,
        1,
        1,
        "notBreaching",
        PERIOD,
        store,
    )
    feed(store, [20, 0, 0, 0])
    # minute 0's datapoint is published at 150 s: at 120 s nothing real exists (OK by
    # notBreaching), at 180 s the most recent real datapoint is minute 0's
    assert alarm.evaluate(120.0).state == "OK"
    assert alarm.evaluate(180.0).state == "ALARM"
    assert alarm.evaluate(240.0).state == "OK"  # minute 1 (0) is out by then


def from_zero_alarm(ci_delay_s: float) -> Alarm:
    aws = AwsConstants(
        sqs_publication_delay_s=(60.0, 60.0),
        container_insights_publication_delay_s=(ci_delay_s, ci_delay_s),
    )
    store = MetricStore(aws, seed=1, step_s=PERIOD)
    visible = MetricStat(
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        (("QueueName", "ingest"),),
        "Maximum",
        PERIOD,
    )
    desired = MetricStat(
        "ECS/ContainerInsights", "DesiredTaskCount", (("ServiceName", "writer"),), "Maximum", PERIOD
    )
    alarm = Alarm(
        "from_zero",
        [
            MetricQuery("visible", visible, None, False),
            MetricQuery("desired", desired, None, False),
            MetricQuery("r", None, "IF(visible > 0 AND FILL(desired, 0) == 0, 1, 0)", True),
        ],
        "GreaterThanOrEqualToThreshold",
        1,
        1,
        1,
        "notBreaching",
        PERIOD,
        store,
    )
    feed(store, [500.0] * 4, visible)
    feed(store, [4.0] * 4, desired)  # a busy writer: four tasks
    return alarm


def test_a_late_desired_count_is_filled_with_zero() -> None:
    """The writer's from-zero alarm: FILL(desired, 0) turns a Container Insights datapoint
    that is later than SQS's into "desired is 0" — one task, even for a busy writer."""
    on_time = from_zero_alarm(ci_delay_s=60.0)
    assert [on_time.evaluate(t).state for t in (125.0, 185.0, 245.0)] == ["OK"] * 3
    late = from_zero_alarm(ci_delay_s=120.0)
    assert [late.evaluate(t).state for t in (125.0, 185.0, 245.0)] == ["ALARM"] * 3


def test_metric_math() -> None:
    assert evaluate_math("(a + b) / t", {"a": 3.0, "b": 5.0, "t": 2.0}) == 4.0
    assert evaluate_math("(a + b) / t", {"a": 3.0, "b": 5.0, "t": 0.0}) is None
    assert evaluate_math("a + b", {"a": 3.0, "b": None}) is None
    assert evaluate_math("IF(a > 0 AND FILL(b, 0) == 0, 1, 0)", {"a": 1.0, "b": None}) == 1.0
    with pytest.raises(KeyError, match="RATE"):
        evaluate_math("RATE(a)", {"a": 1.0})


def test_policies_are_evaluated_once_per_period() -> None:
    policy, _ = tt_policy(service(2))
    calls: list[float] = []
    policy.evaluate = lambda now: calls.append(now)  # type: ignore[method-assign]
    loop = AutoScaling([policy.target], random.Random(1))
    for second in range(1, 601):
        loop.tick(float(second))
    assert len(calls) == 10 and all(
        math.isclose(b - a, 60, abs_tol=1) for a, b in itertools.pairwise(calls)
    )
