"""The policy of deploy/terraform holds the seeds' bursts (issue 18 §3), and the pieces it
rests on behave as AWS documents them: the pods' fast signal decides within seconds of a
step, scheduled events raise the floor at their time, the writer's from-zero alarm never
sets a busy writer to one task, API Gateway's buckets pass their rate, a scale-out step
never scales in. On the shipped scenario files (the full runs, shared between tests) and
on small scenarios (seconds)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.scaling import scenario
from bench.scaling.admission import Admission
from bench.scaling.autoscaling import EcsService, ScalableTarget, StepPolicy
from bench.scaling.aws import AwsConstants
from bench.scaling.cloudwatch import MetricStore, key_of
from bench.scaling.criteria import GOODPUT_SHARE, checked_minutes, could_serve
from bench.scaling.gateway import TokenBucket
from bench.scaling.hcl import TerraformError
from bench.scaling.model import Cohort
from bench.scaling.run import simulate
from bench.scaling.scenario import Backend, BackendPhase, ScenarioError
from bench.scaling.terraform import (
    TERRAFORM_DIR,
    ServiceSpec,
    StepAdjustment,
    load_policy,
)
from bench.scaling.tfedge import Throttle
from bench.scaling.workers import WorkerPool
from service.admission import usable_s
from tests.unit.scaling_runs import SCENARIOS, shipped
from tests.unit.test_scaling_alarms import PERIOD, feed, step_policy
from tests.unit.test_scaling_terraform import edit

UNMET: dict[str, dict[str, str]] = {}
"""The criteria a shipped scenario cannot meet on this policy, and why (docs/benchmarks.md,
"Scaling"). A change that meets one of them fails the test below until this says so."""


def small(**raw: Any) -> scenario.Scenario:
    return scenario.parse({"name": "test", **raw})


# --- the shipped scenarios --------------------------------------------------------------


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_shipped_scenario_holds_its_criteria(path: Path) -> None:
    r = shipped(path)
    failed = {name for name, c in r["criteria"]["checks"].items() if not c["ok"]}
    assert failed == set(UNMET.get(path.stem, {})), r["criteria"]
    assert r["lost"] == 0


def test_the_brownout_needs_the_workers_to_share_the_backends_bound() -> None:
    """Tasks of 32 slots without the shared limit (the policy before it: Terraform held
    ten tasks x 32 within the backend's 400 calls) hold 320 calls at most, where a ten
    times slower backend needs all 400 in flight: the backend's second slow minute serves
    two thirds of what it could, and the goodput criterion fails."""
    path = next(p for p in SCENARIOS if p.stem == "backend-brownout")
    before = replace(
        scenario.load(path),
        model={"settings": {"backend_max_concurrency": 0, "worker_concurrency": 32}},
    )
    r = simulate(before).result
    goodput = r["criteria"]["checks"]["goodput"]
    assert not goodput["ok"], goodput
    minute = r["minutes"][11]
    assert minute["backend_answered"] < 0.8 * could_serve(minute)
    shared = shipped(path)["minutes"][11]
    assert shared["backend_answered"] >= GOODPUT_SHARE * could_serve(shared)


# --- the fast signal ----------------------------------------------------------------------

STEP = {
    "duration_s": 480,
    "backend": {"slots": 400, "service_s": 1.6},
    # the kiosk's doors: 20 -> 65 calls/s at 120 s, past what three workers serve (60/s)
    "load": [
        {"at_s": 0, "queued_rps": 20},
        {"at_s": 120, "queued_rps": 20},
        {"at_s": 120, "queued_rps": 65},
    ],
    # tasks of 32 slots (the variable's default), so that the step needs more of them:
    # production's tasks of 100 hold the backend's 400 slots without a scale-out
    "terraform": {"settings.worker_concurrency": 32},
}


def test_the_pods_signal_decides_within_seconds_of_a_step() -> None:
    """Three workers at 65 calls/s of 1.6 s: the pods' demand crosses the target at the
    step; the 10 s alarm decides within two periods and the publication delay, where
    target tracking on SQS's one-minute datapoints took minutes (before: 323 s)."""
    run = simulate(small(**STEP))
    r = run.result
    decision = r["first_scale_decision_s"]
    # no sooner than the datapoints exist: two 10 s periods after the step, published
    # at least the awslogs driver's batch later
    policy, aws = run.sim.policy, run.sim.aws
    fast = next(p for p in policy.step_policies if p.name == "worker_fast").alarm
    earliest = fast.datapoints_to_alarm * fast.period_s + aws.emf_log_publication_delay_s[0]
    assert decision is not None and earliest <= decision <= 45
    first = r["scaling_activities"][0]
    assert first["service"] == "worker" and first["policy"] == "worker_fast"
    # what the step asks of the backend is answered from the minute after the grace on
    for m in checked_minutes(r["minutes"], [120.0]):
        assert m["backend_answered"] >= GOODPUT_SHARE * could_serve(m), m


def test_the_pods_signal_reaches_the_alarms_after_the_log_drivers_batch() -> None:
    """A 10 s datapoint of the signal is seen neither before its period ends nor before
    the awslogs driver's 5 s batch (and CloudWatch Logs' extraction) has passed."""
    sim = simulate(small(**{**STEP, "duration_s": 60})).sim
    key = next(k for k in sim.store.samples if k[1] == "QueueBacklog")
    stat = next(
        q.stat
        for p in sim.policy.step_policies
        for q in p.alarm.queries
        if q.stat is not None and key_of(q.stat) == key
    )
    lo, hi = sim.aws.emf_log_publication_delay_s
    assert lo >= 5.0
    for k in range(3):
        end = (k + 1) * stat.period_s
        assert sim.store.datapoint(stat, k, end + lo - 0.5) is None
        assert sim.store.datapoint(stat, k, end + hi + 0.5) is not None


def test_without_the_pods_signal_the_workers_wait_for_sqs() -> None:
    # the api writes no line (QF_SCALING_SIGNAL_INTERVAL_S = 0): only SQS's metrics move
    # the workers, minutes late
    r = simulate(small(**STEP), {"scaling_signal_interval_s": 0}).result
    late = r["first_scale_decision_s"]
    assert late is None or late > 120


# --- scheduled events ------------------------------------------------------------------------

EVENT = {
    "duration_s": 900,
    "starts_at": "2026-12-24T19:00:00Z",
    "backend": {"slots": 400, "service_s": 1.6},
    "load": [{"at_s": 0, "queued_rps": 5}],
    "terraform": {
        "scaling_events": {
            "final": {
                "start": "2026-12-24T20:05:00",
                "end": "2026-12-24T20:10:00",
                "timezone": "Europe/Paris",  # 19:05 to 19:10 UTC
                "min_tasks": {"worker": 8, "api": 4},
            }
        }
    },
}


def test_an_event_raises_the_floor_at_its_start_and_restores_it_at_its_end() -> None:
    r = simulate(small(**EVENT)).result
    acts = [
        (round(a["t_s"]), a["service"], a["from"], a["to"], a["policy"])
        for a in r["scaling_activities"]
    ]
    policy = load_policy(EVENT["terraform"])
    floor = {s: policy.services[s].min_tasks for s in ("worker", "api")}
    assert floor["worker"] < 8 and floor["api"] < 4  # the event raises both
    assert (300, "worker", floor["worker"], 8, "scheduled:queuefront-final-worker-start") in acts
    assert (300, "api", floor["api"], 4, "scheduled:queuefront-final-api-start") in acts
    # the end restores the minimum; the count comes down as the load allows (5 calls/s
    # need no more than the old minimum: target tracking, after its 15 minutes)
    ends = [a for a in policy.scheduled if a.name.endswith("worker-end")]
    assert ends and ends[0].min_tasks == policy.services["worker"].min_tasks
    assert r["peak_tasks"]["worker"] == 8


def test_an_event_needs_the_scenario_placed_in_time() -> None:
    raw = {k: v for k, v in EVENT.items() if k != "starts_at"}
    with pytest.raises(ScenarioError, match="starts_at"):
        simulate(small(**raw))


def test_an_event_above_a_services_maximum_is_refused_not_run(tmp_path: Path) -> None:
    # the simulator must not run capacity the apply would never create: the plan's
    # precondition refuses it, and without that precondition Application Auto Scaling would
    top = load_policy().services["worker"].max_tasks
    final = {**EVENT["terraform"]["scaling_events"]["final"], "min_tasks": {"worker": top + 1}}
    raw = {**EVENT, "terraform": {"scaling_events": {"final": final}}}
    with pytest.raises(TerraformError, match=f"asks for {top + 1} worker tasks, above worker_m"):
        simulate(small(**raw))
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy, ignore=shutil.ignore_patterns(".terraform", "tests"))
    edit(
        copy / "modules" / "autoscaling" / "main.tf",
        "condition     = each.value.min <= local.scalable[each.value.service].max",
        "condition     = true",
    )
    with pytest.raises(TerraformError, match=f"minimum {top + 1} above the maximum {top} of wo"):
        load_policy(raw["terraform"], copy, copy / "examples" / "production.tfvars")


def test_a_recurring_schedule_is_not_simulated(tmp_path: Path) -> None:
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy, ignore=shutil.ignore_patterns(".terraform", "tests"))
    edit(
        copy / "modules" / "autoscaling" / "main.tf",
        'schedule = "at(${e.start})"',
        'schedule = "cron(0 20 * * ? *)"',
    )
    with pytest.raises(TerraformError, match="not simulated"):
        load_policy(EVENT["terraform"], copy, copy / "examples" / "production.tfvars")


# --- the writer's from-zero alarm ----------------------------------------------------------


def from_zero_policy(writers: int, ci_delay_s: float) -> tuple[StepPolicy, MetricStore]:
    """The writer's from-zero step policy and alarm exactly as deploy/terraform has them,
    on hand-fed datapoints."""
    spec = next(s for s in load_policy().step_policies if s.name == "writer_from_zero")
    aws = AwsConstants(
        sqs_publication_delay_s=(60.0, 60.0),
        container_insights_publication_delay_s=(ci_delay_s, ci_delay_s),
    )
    store = MetricStore(aws, seed=1, step_s=PERIOD)
    svc_spec = ServiceSpec("writer", 1024, 2048, 0, 4, writers, 0, 0.0, {})
    svc = EcsService(svc_spec, lambda: 0.0, lambda now: 0.0, 0, 4)
    svc.start(writers)
    policy = StepPolicy(spec, ScalableTarget(svc), store)
    stats = {q.id: q.stat for q in spec.alarm.queries if q.stat}
    feed(store, [500.0] * 4, stats["visible"])
    feed(store, [300.0] * 4 if writers else [0.0] * 4, stats["in_flight"])
    feed(store, [float(writers)] * 4, stats["desired"])
    return policy, store


def test_a_late_desired_count_never_sets_a_busy_writer_to_one_task() -> None:
    """Container Insights' datapoint later than SQS's reads as "desired 0" (FILL); a busy
    writer holds messages in flight, which SQS reports with the backlog: no action."""
    policy, _ = from_zero_policy(writers=3, ci_delay_s=120.0)
    for t in (125.0, 185.0, 245.0):
        policy.evaluate(t)
    assert policy.target.service.desired == 3


def test_a_writer_at_zero_is_started() -> None:
    policy, _ = from_zero_policy(writers=0, ci_delay_s=60.0)
    for t in (125.0, 185.0):
        policy.evaluate(t)
    assert policy.target.service.desired == 1


# --- what the policy rests on ------------------------------------------------------------------


def test_a_pod_serves_more_a_second_than_its_listen_backlog_holds() -> None:
    """Requests arrive over a second while the CPU serves them: a pod whose listen
    backlog holds 128 connections serves 2,000 cache hits a second (0.2 s of CPU), and
    refuses only what is still waiting beyond the bound."""
    r = simulate(
        small(
            duration_s=60,
            backend={"slots": 10, "service_s": 1.0},
            load=[{"at_s": 0, "cached_rps": 2000}],
            model={"somaxconn": 128},
        ),
        {"api_min_tasks": 1, "api_max_tasks": 1, "services.api.desired_count": 1},
    ).result
    assert r["shed"]["cached"] == 0, r["shed_reasons"]
    assert r["answered"]["cached"] == r["offered"]["cached"] - r["in_system_at_end"]["cached"]


def test_a_bucket_whose_rate_exceeds_its_burst_passes_its_rate() -> None:
    """API Gateway's votes route: 15,000/s with a 5,000 bucket passes 12,000 votes a second
    (tokens flow in while requests arrive over the second), and no more than it holds
    plus what flows in."""
    bucket = TokenBucket(Throttle(15_000, 5_000))
    passed = []
    for _ in range(10):
        bucket.refill(1.0)
        passed.append(bucket.take(12_000))
    assert passed == [12_000] * 10
    bucket.refill(1.0)
    assert bucket.take(100_000) == 5_000 + 15_000


def test_a_scale_out_step_never_scales_in_within_its_cooldown() -> None:
    """Within the cooldown the step is taken from the capacity the scale-out started from
    (Application Auto Scaling); a smaller result than the current count is no action."""
    svc_spec = ServiceSpec("api", 1024, 2048, 1, 30, 4, 0, 0.0, {})
    svc = EcsService(svc_spec, lambda: 0.0, lambda now: 0.0, 1, 30)
    svc.start(4)
    policy, store = step_policy(
        svc,
        "PercentChangeInCapacity",
        [StepAdjustment(0, 20, 25), StepAdjustment(20, None, 50)],
        threshold=60,
        cooldown=600.0,
        magnitude=1,
    )
    feed(store, [90, 90, 70, 70])
    # 4 + 50 % = 6; then within the cooldown 4 + 25 % = 5 < 6: stays at 6
    out = []
    for k in range(1, 5):
        policy.evaluate(k * PERIOD)
        out.append(policy.target.service.desired)
    assert out == [6, 6, 6, 6]


def test_the_fast_signal_is_written_every_interval_and_read_as_published() -> None:
    """The simulator's pods write a sample every QF_SCALING_SIGNAL_INTERVAL_S (Terraform:
    5 s), which the 10 s alarms aggregate."""
    sim = simulate(small(**{**STEP, "duration_s": 60})).sim
    interval = float(sim.api_settings["scaling_signal_interval_s"])
    assert interval == 5.0
    read = {
        key_of(q.stat)
        for p in sim.policy.step_policies
        for q in p.alarm.queries
        if q.stat is not None and q.stat.namespace == sim.policy.signal_namespace
    }
    assert read
    for key in read:
        written = [v for v in sim.store.samples[key] if v is not None]
        assert len(written) == pytest.approx(60 / interval, abs=1), key


# --- the product's refusals as the simulator models them (docs/benchmarks.md) ---------------

BROWNOUT = {
    "duration_s": 420,
    "backend": {
        "slots": 400,
        "service_s": 1.6,
        "phases": [{"at_s": 120, "service_s": 16.0}, {"at_s": 240, "service_s": 1.6}],
    },
    "load": [{"at_s": 0, "queued_rps": 60}],
}


def test_a_worker_that_refuses_late_messages_turns_504s_into_fast_503s() -> None:
    """On by default, as the workers do it (QF_WORKER_REFUSE_LATE); the flag shows the
    product before it."""
    before = simulate(small(**BROWNOUT, model={"worker_refuses_late": False})).result
    run = simulate(small(**BROWNOUT))
    refusing = run.result
    assert before["timed_out"] > 100
    assert "worker_refused_late" not in before["shed_reasons"].get("queued", {})
    assert refusing["shed_reasons"]["queued"]["worker_refused_late"] > 0
    assert refusing["timed_out"] < before["timed_out"] / 2
    # the slots the refused messages would have held go to fresher ones
    assert refusing["answered"]["queued"] >= before["answered"]["queued"]


def test_the_simulated_workers_refuse_late_as_the_product_is_set() -> None:
    off = small(**BROWNOUT, model={"settings": {"worker_refuse_late": False}})
    assert simulate(small(**BROWNOUT)).sim.pool.refuse_late
    assert not simulate(off).sim.pool.refuse_late


def test_a_slowdown_shows_in_the_calls_in_flight_before_the_first_slow_one_ends() -> None:
    slowdown = (BackendPhase(at_s=1.0, service_s=16.0),)
    pool = WorkerPool(Backend(slots=10, service_s=0.5, phases=slowdown), concurrency=10)
    pool.tasks, pool.refuse_late = 1, True
    warm = Cohort("queued", "normal", 1, 0.0, 60.0)
    pool.queues["normal"].push(warm, 1, 0.0)
    pool.run(0.0, 1.0)  # one fast call completed: the workers are not cold
    first = Cohort("queued", "normal", 2, 1.0, 60.0)
    pool.queues["normal"].push(first, 2, 1.0)
    pool.run(1.0, 6.0)  # both slow calls still in service, the mean still 0.5 s
    assert pool.service_estimate_s(6.0) >= 5.0
    late = Cohort("queued", "normal", 1, 1.0, 10.0)  # 4 s left at 6 s: less than 5 s
    fresh = Cohort("queued", "normal", 1, 6.0, 26.0)
    pool.queues["normal"].push(late, 1, 6.0)
    pool.queues["normal"].push(fresh, 1, 6.0)
    pool.run(6.0, 7.0)
    assert [(c, n) for c, n, _ in pool.refusals] == [(late, 1)]
    assert pool.held == 3  # the fresh one is called


def test_cold_workers_never_refuse() -> None:
    """Nothing completed yet: no estimate, as in workers/priority/pace.py."""
    pool = WorkerPool(Backend(slots=10, service_s=16.0), concurrency=10)
    pool.tasks, pool.refuse_late = 1, True
    pool.queues["normal"].push(Cohort("queued", "normal", 2, 0.0, 60.0), 2, 0.0)
    pool.run(0.0, 5.0)  # two calls 5 s in flight, nothing completed
    late = Cohort("queued", "normal", 1, 1.0, 9.0)  # 4 s left: less than the 5 s in flight
    pool.queues["normal"].push(late, 1, 5.0)
    pool.run(5.0, 6.0)
    assert pool.refusals == [] and pool.held == 3


def test_the_simulated_workers_refuse_what_the_slower_calls_would_outlast() -> None:
    """Calls of 16 s ± 25 % (five groups, 12.8 to 19.2 s): as workers/priority/pace.py, a
    message is refused when a tenth of the recent calls would not fit what is left of
    its window (their 90th percentile), not only when most would (their median)."""
    pool = WorkerPool(Backend(slots=10, service_s=16.0), concurrency=10, spread=0.25)
    pool.tasks, pool.refuse_late = 1, True
    pool.queues["normal"].push(Cohort("queued", "normal", 10, 0.0, 60.0), 10, 0.0)
    pool.run(0.0, 20.0)  # 16, 17.6 and 19.2 s calls ended within the last 5 s, two each
    assert pool.service_estimate_s(20.0) == pytest.approx(19.2)
    late = Cohort("queued", "normal", 1, 2.0, 38.0)  # 18 s left: the median call fits
    whole = Cohort("queued", "normal", 1, 20.0, 40.0)
    pool.queues["normal"].push(late, 1, 20.0)
    pool.queues["normal"].push(whole, 1, 20.0)
    pool.run(20.0, 21.0)
    assert [(c, n) for c, n, _ in pool.refusals] == [(late, 1)]


def test_calls_started_one_at_a_time_take_every_service_time_of_the_spread() -> None:
    """The spread is the calls' own: calls started alone vary as much as calls started
    together (else a trickle of single calls all took the middle time, and the slow tail
    the workers judge on showed only after bursts)."""
    pool = WorkerPool(Backend(slots=10, service_s=16.0), concurrency=10, spread=0.25)
    pool.tasks = 1
    for i in range(5):
        pool.queues["normal"].push(Cohort("queued", "normal", 1, i, 60.0), 1, float(i))
    pool.run(0.0, 5.0)
    taken = sorted(end - start for end, _, _, _, start in pool._in_service)
    assert taken == pytest.approx([12.8, 14.4, 16.0, 17.6, 19.2])


def test_admission_keeps_seconds_of_the_window_free_not_a_share_of_it() -> None:
    """The simulated pods admit as service/admission.py does (its ``usable_s``); a fixed
    margin of 4 s (``admission_margin_s``, here the rule before: a fifth of a 20 s window)
    leaves a 16 s call no room for any wait."""
    settings = load_policy().services["api"].settings
    product, fifth = Admission(settings), Admission(settings)
    fifth.margin_s = 4.0
    for adm in (product, fifth):  # 320 slots; 200 calls of 16 s completed
        adm.poll(0.0, 0, 0, 320, 0, 0.0)
        adm.poll(5.0, 0, 0, 320, 200, 200 * 16.0)
        assert adm.estimate.service_s == pytest.approx(16.0)
    assert product.usable_s(20.0) == usable_s(20.0)
    assert fifth.room("normal", 20.0, 5.0) <= 1  # nothing may wait ahead of a new request
    assert product.room("normal", 20.0, 5.0) > 10
