"""The simulation loop: one fixed step (at most 1 s) after another, each moving the
requests that arrived through CloudFront, API Gateway, the api tasks, the queues, the
workers and the backend, and the votes through the ingest queue and the writers; then
sampling CloudWatch's metrics and letting Application Auto Scaling act.

The api tier, per step: the requests that passed API Gateway join the api processes'
listen backlogs, and the tasks' CPU (running tasks x vCPUs x ``vcpu_factor``) serves them
oldest first at the measured CPU per request of their class; what still waits at the
step's end beyond the backlogs' bound (``QF_LISTEN_BACKLOG`` capped by the kernel's
somaxconn, per process) is refused, newest first: a 503 from the ALB. (Requests arrive
over the step while the CPU serves, so a second's arrivals may exceed the bound.) A queued
request then meets the pod's pending bound (``QF_MAX_PENDING_REPLIES`` per process) and
admission (bench/scaling/admission.py); admitted, it is a message in the high or normal
queue with a deadline one reply window after the handler started (or API Gateway's 30 s
after the client sent it, if sooner).

Every step also records the samples of the metrics the policy reads — the pods' scaling
signal only in the steps where a pod writes its line (``QF_SCALING_SIGNAL_INTERVAL_S``) —
runs the scheduled actions that are due, and lets Application Auto Scaling act.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.scaling.admission import Admission
from bench.scaling.autoscaling import (
    AutoScaling,
    EcsService,
    ScalableTarget,
    StepPolicy,
    TargetTrackingPolicy,
)
from bench.scaling.aws import AwsConstants
from bench.scaling.cloudwatch import MetricKey, MetricStore
from bench.scaling.figures import ThroughputFigures
from bench.scaling.gateway import ApiGateway, EdgeCache
from bench.scaling.hcl import TerraformError
from bench.scaling.ledger import Ledger, weighted_percentile
from bench.scaling.model import Batch, Cohort, ModelConstants, Priority
from bench.scaling.scenario import CLASSES, ROUTE_TABLE, Scenario, cached_miss_priority
from bench.scaling.terraform import Policy, ServiceSpec
from bench.scaling.tfedge import Throttle
from bench.scaling.workers import WorkerPool
from bench.scaling.writer import IngestQueue
from service.scaling_signal import METRICS as SIGNAL_METRICS

FLOWS = ("high", "normal", "cached_hit", "cached_miss", "ingest", "edge_origin", "edge_direct")
"""What reaches API Gateway: queued (high, normal), cached hits and misses, votes,
CloudFront's refreshes of edge-cached URLs, and edge requests when no CDN caches them."""
CLIENT_CLASS = {
    "high": "queued",
    "normal": "queued",
    "cached_hit": "cached",
    "cached_miss": "cached",
    "ingest": "ingest",
    "edge_origin": "edge_origin",
    "edge_direct": "edge",
}


class Arrivals:
    """``n`` requests of one flow in the api processes' listen backlogs since ``arrived``."""

    __slots__ = ("arrived", "flow", "n")

    def __init__(self, flow: str, n: int, arrived: float) -> None:
        self.flow = flow
        self.n = n
        self.arrived = arrived


@dataclass
class Series:
    """Per-step figures for the plot and the per-minute checks."""

    t: list[float] = field(default_factory=list)
    offered: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    answered: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    shed: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    running: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    desired: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    backlog: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    latencies: list[list[tuple[float, int]]] = field(default_factory=list)
    backend_capacity_rps: list[float] = field(default_factory=list)
    backend_offered: list[int] = field(default_factory=list)
    """Requests that need the backend (queued, cached misses, CloudFront's refreshes),
    counted when clients send them."""
    backend_answered: list[int] = field(default_factory=list)
    """Of those, answered within their window, counted when answered."""


class Simulation:
    def __init__(
        self,
        scenario: Scenario,
        policy: Policy,
        figures: ThroughputFigures,
        aws: AwsConstants,
        model: ModelConstants,
        route_table: Path = ROUTE_TABLE,
    ) -> None:
        self.scenario = scenario
        self.policy = policy
        self.aws = aws
        self.model = model
        self.dt = scenario.step_s
        self.rng = random.Random(scenario.seed)
        self.ledger = Ledger()
        self.series = Series()
        api_spec, worker_spec, writer_spec = (
            replace(policy.services[s], settings={**policy.services[s].settings, **model.settings})
            for s in ("api", "worker", "writer")
        )
        self.api_settings = api_spec.settings
        self.window_s = policy.reply_window_s
        self.cached_miss_priority = cached_miss_priority(route_table)
        edge = policy.edge
        # API Gateway answers 504 itself after its integration timeout (the Terraform's)
        self.client_limit_s = (
            edge.integration_timeout_s
            if model.api_gateway and edge is not None
            else aws.api_gateway_timeout_s
        )
        # ingest_direct: the votes' route sends them from API Gateway to SQS, no pod sees them
        self.ingest_direct = bool(
            model.api_gateway
            and edge is not None
            and scenario.routes.get("ingest") in edge.direct_routes
        )

        # per-request costs (seconds of one core of the measuring machine)
        self.cpu = {
            "queued": figures.cpu_s("proxied", "api"),
            "cached": figures.cpu_s("cached", "api"),
            "ingest": figures.cpu_s("votes", "api"),
        }
        self.cpu["refusal"] = (
            model.refusal_cpu_s if model.refusal_cpu_s is not None else self.cpu["cached"]
        )
        self.sqs_calls_per = {
            "queued": figures.sqs_calls("proxied"),
            "ingest": figures.sqs_calls("votes"),
        }

        configured = int(self.api_settings.get("api_processes", 0))
        self.api_processes = (
            model.api_processes or configured or max(1, math.floor(api_spec.cpu_units / 1024))
        )
        self.api_cpu_per_task = (
            min(self.api_processes, api_spec.cpu_units / 1024) * model.vcpu_factor
        )
        backlog = min(int(self.api_settings["listen_backlog"]), model.somaxconn)
        self.listen_backlog_per_task = self.api_processes * backlog
        self.max_pending_per_process = int(self.api_settings["max_pending_replies"])

        # the services
        self.services = {
            spec.name: self._service(spec, initial)
            for spec, initial in (
                (api_spec, model.api_tasks),
                (worker_spec, model.worker_tasks),
                (writer_spec, model.writer_tasks),
            )
        }
        concurrency = int(worker_spec.settings["worker_concurrency"])
        self.pool = WorkerPool(
            scenario.backend,
            concurrency,
            model.service_spread,
            int(worker_spec.settings.get("backend_max_concurrency", 0)),
        )
        self.pool.cpu_s_per_message = figures.cpu_s("proxied", "worker")
        self.pool.cpu_per_task = min(1.0, worker_spec.cpu_units / 1024) * model.vcpu_factor
        self.pool.refuse_late = (
            bool(worker_spec.settings["worker_refuse_late"])
            if model.worker_refuses_late is None
            else model.worker_refuses_late
        )
        retention = float(policy.queues["ingest"]["message_retention_s"])
        self.ingest = IngestQueue(
            pack_max=int(self.api_settings["ingest_pack_max"]),
            batch_size=int(writer_spec.settings["batch_size"]),
            batch_wait_s=float(writer_spec.settings["batch_max_wait_s"]),
            retention_s=retention,
        )
        self.ingest.cpu_s_per_item = figures.cpu_s("votes", "writer")
        self.ingest.cpu_per_task = min(1.0, writer_spec.cpu_units / 1024) * model.vcpu_factor
        self.admission = Admission(self.api_settings)
        self.admission.margin_s = model.admission_margin_s
        self.gateway = ApiGateway(
            policy,
            Throttle(aws.api_gateway_account_rate, aws.api_gateway_account_burst),
            scenario.routes,
            model.api_gateway,
        )
        mix = scenario.mix
        self.edge = EdgeCache(mix.edge_objects, mix.edge_ttl_s, aws.cloudfront_error_ttl_s, self.dt)

        # the api's listen backlogs, the normal requests waiting on the high backlog, the
        # admitted requests by deadline
        self.inbox: deque[Arrivals] = deque()
        self.inbox_total = 0
        self.held: deque[Batch] = deque()
        self.pending: deque[Cohort] = deque()
        self.pending_open = 0
        self.rejections = 0  # this step: admission 503s (predicted wait, pending, high backlog)
        self.step_backend_offered = 0
        self.step_backend_answered = 0
        self.api_cpu_used = 0.0
        self.api_requests = 0
        self.gateway_offered = 0
        self.gateway_passed = 0
        self.queued_messages = 0
        self.ingest_items = 0
        self.direct_items = 0
        """Votes API Gateway sent to SQS itself (ingest_direct), one message each."""
        self._cumulative: dict[tuple[str, float], float] = {}
        self.by_priority: dict[str, dict[str, int]] = {
            p: defaultdict(int) for p in ("high", "normal")
        }
        """Queued requests' outcomes per priority: offered, answered, shed, timed_out."""

        # CloudWatch and Application Auto Scaling
        self.store = MetricStore(
            aws, scenario.seed + 1, self.dt, frozenset({policy.signal_namespace})
        )
        self.signal_interval_s = float(self.api_settings.get("scaling_signal_interval_s", 0))
        self._signal_refusals = 0
        self._signal_due = self.signal_interval_s
        self._signal_written = False
        self._signal_cpu = [0.0, 0.0]
        """The api's CPU used and available since the pods' last line (core-seconds)."""
        self.scheduled = [(scenario.at_s(a.at), a) for a in policy.scheduled]
        targets = {name: ScalableTarget(svc) for name, svc in self.services.items()}
        for spec in policy.target_tracking:
            targets[spec.service].tt.append(
                TargetTrackingPolicy(spec, targets[spec.service], self.store, aws)
            )
        for step in policy.step_policies:
            targets[step.service].steps.append(StepPolicy(step, targets[step.service], self.store))
        self.targets = targets
        self.autoscaling = AutoScaling(list(targets.values()), random.Random(scenario.seed + 2))
        self.providers: dict[MetricKey, Callable[[float], float | None]] = {
            key: self._provider(key) for key in self.store.samples
        }

    # --- construction helpers ------------------------------------------------------------

    def _service(self, spec: ServiceSpec, initial: int | None) -> EcsService:
        aws = self.aws
        extra = self.policy.alb_healthy_after_s if spec.name == "api" else 0.0

        def start_s() -> float:
            return self.rng.uniform(*aws.task_start_s) + aws.process_ready_s + extra

        def drain_s(now: float) -> float:
            if spec.name == "api":
                return self.policy.deregistration_delay_s
            if spec.name == "worker":
                return min(self.policy.stop_timeout_s, self.scenario.backend.service_at(now))
            return min(self.policy.stop_timeout_s, float(spec.settings["batch_max_wait_s"]))

        svc = EcsService(spec, start_s, drain_s, spec.min_tasks, spec.max_tasks)
        svc.start(spec.initial_tasks if initial is None else initial)
        return svc

    def _signal(self, name: str) -> Callable[[float], float | None]:
        """What the api pods write as their scaling signal (service/scaling_signal.py),
        from the state they read it from: the admission's view of the queues and the
        workers (the last backlog poll, the drain estimate), the pods' CPU, refusals and
        pending replies. A sample exists only when a line is written, every
        ``QF_SCALING_SIGNAL_INTERVAL_S``; refusals are the count since the last line."""
        keys = {v: k for k, v in self.policy.signal_metrics.items()}
        if name not in keys or keys[name] not in SIGNAL_METRICS:
            raise TerraformError(
                f"the policy reads {name} of the scaling signal, which the api does not "
                f"write ({', '.join(n for n, _ in SIGNAL_METRICS.values())})"
            )
        if SIGNAL_METRICS[keys[name]][0] != name:
            raise TerraformError(
                f"deploy/terraform/scaling_signal.json names {keys[name]} {name}, the api "
                f"writes {SIGNAL_METRICS[keys[name]][0]}"
            )
        key, adm = keys[name], self.admission

        def value(now: float) -> float | None:
            est = adm.estimate
            if key == "backlog":
                return float(adm.backlog["high"] + adm.backlog["normal"])
            if key == "drain_rate":
                return max(0.0, est.rate)
            if key == "drain_capacity":
                if not est.live_workers:
                    return 0.0
                return est.potential if math.isfinite(est.potential) else None
            if key == "predicted_wait":
                wait = adm.predicted_wait_s("normal", now)
                return wait if math.isfinite(wait) else None
            if key == "refusals":
                return self._signal_refusals / self.dt  # a count: CloudWatch sums it
            if key == "pending":
                return self.pending_open / max(1, self._api_processes_total(now))
            # the pods' CPU over the interval since their last line
            return 100.0 * self._signal_cpu[0] / self._signal_cpu[1] if self._signal_cpu[1] else 0.0

        def sampled(now: float) -> float | None:
            return value(now) if self._signal_written else None

        return sampled

    def _provider(self, key: MetricKey) -> Callable[[float], float | None]:
        """The simulated value behind one CloudWatch metric (per second)."""
        namespace, name, dims = key
        if namespace == self.policy.signal_namespace:
            return self._signal(name)
        d = dict(dims)
        queue, service = d.get("QueueName"), d.get("ServiceName") or d.get("TargetGroup")
        if namespace == "AWS/SQS" and queue in ("high", "normal", "ingest"):
            q: str = queue
            if name == "ApproximateNumberOfMessagesVisible":
                return lambda now: float(self._visible(q))
            if name == "ApproximateNumberOfMessagesNotVisible":
                return lambda now: float(self._not_visible(q))
            if name == "ApproximateAgeOfOldestMessage":
                return lambda now: self._oldest_age(q, now)
        if namespace == "ECS/ContainerInsights" and service in self.services:
            svc = self.services[service]
            if name == "RunningTaskCount":
                return lambda now: float(svc.running_incl_draining(now))
            if name == "DesiredTaskCount":
                return lambda now: float(svc.desired)
            if name == "PendingTaskCount":
                return lambda now: float(svc.pending(now))
        if namespace == "AWS/ECS" and name == "CPUUtilization" and service in self.services:
            s: str = service
            return lambda now: self._cpu_utilisation(s, now)
        if namespace == "AWS/ApplicationELB" and name == "RequestCountPerTarget":
            return lambda now: (
                self.api_requests / self.dt / max(1, self.services["api"].running(now))
            )
        if name == "queuefront_admission_rejections_total":
            return lambda now: self.rejections / self.dt
        if name == "queuefront_pending_replies":
            return lambda now: self.pending_open / max(1, self._api_processes_total(now))
        if name == "queuefront_queue_backlog_messages":
            return lambda now: float(self._visible("high") + self._visible("normal"))
        raise TerraformError(
            f"the policy reads {namespace} {name} {d}, which the simulator does not produce "
            "(add it to Simulation._provider)"
        )

    def _run_scheduled(self, now: float) -> None:
        """Scheduled actions that are due: the scalable target's new minimum and maximum;
        a count outside them is brought within at once (Application Auto Scaling User
        Guide, "Scheduled scaling")."""
        while self.scheduled and self.scheduled[0][0] <= now:
            _, action = self.scheduled.pop(0)
            if not self.model.autoscaling:
                continue
            svc = self.services[action.service]
            if action.min_tasks is not None:
                svc.min_tasks = action.min_tasks
            if action.max_tasks is not None:
                svc.max_tasks = action.max_tasks
            self.targets[action.service].apply(
                f"scheduled:{action.name}", svc.desired, max(0.0, now)
            )

    # --- what the metrics read -----------------------------------------------------------

    def _visible(self, queue: str) -> int:
        if queue == "ingest":
            return self.ingest.messages - self.ingest.held()
        return self.pool.visible(queue)  # type: ignore[arg-type]

    def _not_visible(self, queue: str) -> int:
        if queue == "ingest":
            return self.ingest.in_flight()
        return self.pool.not_visible(queue)  # type: ignore[arg-type]

    def _oldest_age(self, queue: str, now: float) -> float:
        if queue == "ingest":
            return self.ingest.oldest_age_s(now)
        return self.pool.queues[queue].oldest_age_s(now)  # type: ignore[index]

    def _api_processes_total(self, now: float) -> int:
        return self.services["api"].running(now) * self.api_processes

    def _cpu_utilisation(self, service: str, now: float) -> float:
        if service == "api":
            cap = self.services["api"].running(now) * self.api_cpu_per_task * self.dt
            return 100.0 * self.api_cpu_used / cap if cap else 0.0
        if service == "worker":
            return 100.0 * self.pool.utilisation() if self.pool.slots else 0.0
        return 100.0 if self.ingest.items else 0.0

    # --- the run -------------------------------------------------------------------------

    def run(self) -> None:
        steps = round(self.scenario.duration_s / self.dt)
        for i in range(steps):
            self.step(i * self.dt)

    def step(self, t: float) -> None:
        dt, led = self.dt, self.ledger
        t1 = t + dt
        led.new_step()
        self.rejections = 0
        self.step_backend_offered = 0
        self.step_backend_answered = 0
        self.api_cpu_used = 0.0
        self.api_requests = 0
        for svc in self.services.values():
            svc.advance(t, dt)
        self.pool.tasks = self.services["worker"].running(t)
        self.ingest.tasks = self.services["writer"].running(t)

        if t >= self.admission.next_poll_s:  # a pod reads the backlog before it serves
            self.admission.poll(
                t,
                self.pool.visible("high"),
                self.pool.visible("normal"),
                self.pool.slots,
                self.pool.completed,
                self.pool.busy_s,
            )
        wants = self._arrivals(t, t1)
        passed = self.gateway.admit(dt, wants)
        for flow, n in wants.items():
            throttled = n - passed.get(flow, 0)
            if throttled:
                self._refuse(flow, throttled, "api_gateway_throttle", t)
        self.gateway_offered += sum(wants.values())
        self.gateway_passed += sum(passed.values())
        if self.ingest_direct:
            self._send_direct(passed.pop("ingest", 0), t)
        self._into_backlogs(passed, t)
        self._serve_api(t)
        self._trim_backlogs(t)
        self._release_held(t)
        self.pool.run(t, t1)
        self._completions()
        self._sweep(t1)
        self.ingest.run(t, dt)
        self._signal_refusals += self.rejections
        self._signal_cpu[0] += self.api_cpu_used
        self._signal_cpu[1] += self.services["api"].running(t) * self.api_cpu_per_task * dt
        self._signal_written = self.signal_interval_s > 0 and t + dt > self._signal_due
        for key, provider in self.providers.items():
            self.store.record(key, provider(t))
        if self._signal_written:
            self._signal_due += self.signal_interval_s
            self._signal_refusals = 0
            self._signal_cpu = [0.0, 0.0]
        self._run_scheduled(t1)
        if self.model.autoscaling:
            self.autoscaling.tick(t1)
        self._record(t)

    # --- arrivals, API Gateway, listen backlogs --------------------------------------------------

    def _count(self, cls: str, t: float, t1: float, share: float = 1.0) -> int:
        """Requests of ``cls`` (x ``share``) offered in [t, t1): whole ones, the fractions
        carried over (the difference of the rounded-down cumulative counts)."""
        before = self._cumulative.get((cls, t))
        if before is None:
            before = self.scenario.cumulative(cls, t)
        after = self.scenario.cumulative(cls, t1)
        if len(self._cumulative) > 32:
            self._cumulative = {k: v for k, v in self._cumulative.items() if k[1] >= t}
        self._cumulative[(cls, t1)] = after
        return math.floor(share * after + 1e-9) - math.floor(share * before + 1e-9)

    def _arrivals(self, t: float, t1: float) -> dict[str, int]:
        led, mix = self.ledger, self.scenario.mix
        n = {c: self._count(c, t, t1) for c in CLASSES}
        for c in CLASSES:
            led.offer(c, n[c])
        high = self._count("queued", t, t1, mix.high_share)
        misses = self._count("cached", t, t1, mix.cached_miss_ratio)
        self.by_priority["high"]["offered"] += high
        self.by_priority["normal"]["offered"] += n["queued"] - high
        wants = {
            "high": high,
            "normal": n["queued"] - high,
            "cached_hit": n["cached"] - misses,
            "cached_miss": misses,
            "ingest": n["ingest"],
            "edge_origin": 0,
        }
        if self.model.cloudfront:
            errors = round(n["edge"] * self.edge.error_share(t))
            led.refuse("edge", errors, "edge_cached_error")
            led.answer("edge", n["edge"] - errors)
            # CloudFront fetches only what a viewer asks for
            refreshes = min(n["edge"], self.edge.refreshes_due(t, self.dt))
            led.offer("edge_origin", refreshes)
            wants["edge_origin"] = refreshes
        else:  # no edge cache: every edge request goes to the origin (a normal queued route)
            wants["edge_direct"] = n["edge"]
        self.step_backend_offered += (
            n["queued"] + misses + wants["edge_origin"] + wants.get("edge_direct", 0)
        )
        return wants

    def _send_direct(self, n: int, t: float) -> None:
        """ingest_direct: API Gateway sends each vote as its own message (SendMessage with
        the request's attributes, modules/edge/api.tf) and answers 202 once SQS has it;
        nothing packs them, so the writers receive one item per message."""
        if n <= 0:
            return
        at = t + self.aws.sqs_send_s
        self.ingest.accept(n, at, 1.0, n / self.dt)
        self.direct_items += n
        self.ledger.answer("ingest", n, self.aws.sqs_send_s)

    def _refuse(self, flow: str, n: int, reason: str, now: float) -> None:
        cls = CLIENT_CLASS[flow]
        self.ledger.refuse(cls, n, reason)
        if flow in self.by_priority:
            self.by_priority[flow]["shed"] += n
        if flow == "edge_origin":
            # CloudFront caches a 503 from the origin, not API Gateway's 429
            self.edge.refresh_failed(n, now, cached=reason != "api_gateway_throttle")
        if reason in ("predicted_wait", "pending_limit", "high_backlog"):
            self.rejections += n

    def _into_backlogs(self, passed: dict[str, int], t: float) -> None:
        """This step's requests join the listen backlogs; what the CPU serves meanwhile
        leaves them, and ``_trim_backlogs`` refuses what would not have fitted."""
        for flow in FLOWS:
            n = passed.get(flow, 0)
            if n <= 0:
                continue
            self.api_requests += n  # the ALB routes them, accepted or not
            self.inbox.append(Arrivals(flow, n, t))
            self.inbox_total += n

    def _trim_backlogs(self, t: float) -> None:
        """Requests arrive over the step while the CPU serves: the backlogs overflow only
        by what is still waiting at the step's end beyond their bound, and the kernel
        refuses the newest connections (a 503 from the ALB)."""
        bound = self.services["api"].running(t) * self.listen_backlog_per_task
        while self.inbox_total > bound and self.inbox:
            entry = self.inbox[-1]
            k = min(entry.n, self.inbox_total - bound)
            self._refuse(entry.flow, k, "api_listen_backlog_full" if bound else "no_api_task", t)
            entry.n -= k
            self.inbox_total -= k
            if entry.n == 0:
                self.inbox.pop()

    def _serve_api(self, t: float) -> None:
        """The api processes' CPU serves the listen backlogs, oldest first."""
        api = self.services["api"]
        capacity = api.running(t) * self.api_cpu_per_task * self.dt
        budget = capacity
        procs = max(1, self._api_processes_total(t))
        while self.inbox:
            entry = self.inbox[0]
            flow, n, arrived = entry.flow, entry.n, entry.arrived
            if t - arrived >= self.client_limit_s:
                self.inbox.popleft()
                self.inbox_total -= n
                self._time_out(flow, n, t)
                continue
            cost = (
                self.cpu["cached"]
                if flow == "cached_hit"
                else (self.cpu["ingest"] if flow == "ingest" else self.cpu["queued"])
            )
            k = min(n, int(budget / cost)) if cost > 0 else n
            if k <= 0:
                break
            at = t + self.dt * (1 - budget / capacity) if capacity else t
            used = self._handle(flow, k, arrived, at, procs)
            budget -= used
            entry.n = n - k
            self.inbox_total -= k
            if n == k:
                self.inbox.popleft()
        self.api_cpu_used = capacity - budget

    def _count_priority(self, cohort: Cohort, outcome: str, n: int) -> None:
        if cohort.cls == "queued":
            self.by_priority[cohort.priority][outcome] += n

    def _time_out(self, flow: str, n: int, now: float) -> None:
        self.ledger.time_out(CLIENT_CLASS[flow], n)
        if flow in self.by_priority:
            self.by_priority[flow]["timed_out"] += n
        if flow == "edge_origin":
            self.edge.refresh_failed(n, now)

    def _handle(self, flow: str, k: int, arrived: float, at: float, procs: int) -> float:
        """k requests of ``flow`` reach their handler at ``at``; returns the CPU spent."""
        led, cpu = self.ledger, self.cpu
        if flow == "cached_hit":
            led.answer("cached", k, at - arrived)
            return k * cpu["cached"]
        if flow == "ingest":
            rate = k / self.dt
            self.ingest.accept(k, at, 1 + rate / procs * self.aws.sqs_send_s, rate)
            self.ingest_items += k
            led.answer("ingest", k, at - arrived + self.aws.sqs_send_s)
            return k * cpu["ingest"]
        priority: Priority = "high" if flow == "high" else "normal"
        if flow == "cached_miss":
            priority = self.cached_miss_priority
        pending_room = max(0, procs * self.max_pending_per_process - self.pending_open)
        room = self.admission.room(priority, self.window_s, at)
        admit_room = room * procs
        admitted = int(min(k, pending_room, admit_room))
        refused = k - admitted
        if refused:
            reason = "pending_limit" if pending_room < admit_room else "predicted_wait"
            self._refuse(flow, refused, reason, at)
        if admitted:
            self.admission.admit(priority, admitted / procs)
            deadline = min(at + self.window_s, arrived + self.client_limit_s)
            cohort = Cohort(CLIENT_CLASS[flow], priority, admitted, arrived, deadline)
            self.pending.append(cohort)
            self.pending_open += admitted
            if priority == "normal" and self.admission.high_backlog_blocks():
                self.held.append(Batch(cohort, admitted, at))
            else:
                self._enqueue(cohort, admitted, at)
        return admitted * cpu["queued"] + refused * cpu["refusal"]

    def _enqueue(self, cohort: Cohort, n: int, at: float) -> None:
        self.pool.queues[cohort.priority].push(cohort, n, at + self.aws.sqs_delivery_s)
        self.queued_messages += n

    def _release_held(self, t: float) -> None:
        """Normal requests waiting while the high backlog is over its threshold
        (BacklogMonitor.high_backlog_clear): through when it drops, 503 after the wait."""
        blocked = self.admission.high_backlog_blocks()
        while self.held:
            cohort, n, since = self.held[0].cohort, self.held[0].n, self.held[0].at
            if cohort.expired:  # its window ended while it waited: already a 504
                self.held.popleft()
            elif not blocked:
                self.held.popleft()
                self._enqueue(cohort, n, max(t, since))
            elif t - since >= self.admission.wait_s:
                self.held.popleft()
                cohort.open -= n
                self.pending_open -= n
                self.ledger.refuse(cohort.cls, n, "high_backlog")
                self._count_priority(cohort, "shed", n)
                self.rejections += n
                if cohort.cls == "edge_origin":
                    self.edge.refresh_failed(n, t)
            else:
                break

    # --- answers and timeouts ------------------------------------------------------------

    def _completions(self) -> None:
        for cohort, n, at in self.pool.refusals:
            if cohort.expired:
                continue
            cohort.open -= n
            self.pending_open -= n
            self.ledger.refuse(cohort.cls, n, "worker_refused_late")
            self._count_priority(cohort, "shed", n)
            if cohort.cls == "edge_origin":
                self.edge.refresh_failed(n, at)
        for cohort, n, end in self.pool.completions:
            if cohort.expired or end > cohort.deadline:
                self.pool.late_calls += n
                continue
            cohort.open -= n
            self.pending_open -= n
            self.ledger.answer(cohort.cls, n, end - cohort.arrived)
            self._count_priority(cohort, "answered", n)
            self.step_backend_answered += n

    def _sweep(self, t1: float) -> None:
        """504 for what is left of every cohort whose window ended."""
        while self.pending and self.pending[0].deadline <= t1:
            cohort = self.pending.popleft()
            cohort.expired = True
            if cohort.open > 0:
                self._time_out_cohort(cohort, t1)

    def _time_out_cohort(self, cohort: Cohort, now: float) -> None:
        self.ledger.time_out(cohort.cls, cohort.open)
        self._count_priority(cohort, "timed_out", cohort.open)
        if cohort.cls == "edge_origin":
            self.edge.refresh_failed(cohort.open, now)
        self.pending_open -= cohort.open
        cohort.open = 0

    # --- the record ----------------------------------------------------------------------

    def _record(self, t: float) -> None:
        s, led = self.series, self.ledger
        s.t.append(t)
        for c in (*CLASSES, "edge_origin"):
            s.offered[c].append(led.step_offered.get(c, 0))
            s.answered[c].append(led.step_answered.get(c, 0))
            s.shed[c].append(led.step_shed.get(c, 0))
        for name, svc in self.services.items():
            s.running[name].append(svc.running(t))
            s.desired[name].append(svc.desired)
        s.backlog["high"].append(self.pool.queues["high"].length)
        s.backlog["normal"].append(self.pool.queues["normal"].length)
        s.backlog["ingest"].append(self.ingest.messages)
        s.latencies.append(led.step_latencies)
        s.backend_capacity_rps.append(
            self.scenario.backend.slots / self.scenario.backend.service_at(t)
        )
        s.backend_offered.append(self.step_backend_offered)
        s.backend_answered.append(self.step_backend_answered)
        for q in self.pool.queues.values():
            q.max_oldest_age_s = max(q.max_oldest_age_s, q.oldest_age_s(t))
        self.ingest.max_oldest_age_s = max(
            self.ingest.max_oldest_age_s, self.ingest.oldest_age_s(t)
        )

    # --- at the end ----------------------------------------------------------------------

    def in_system(self) -> dict[str, int]:
        """Requests neither answered, refused nor timed out, by client class."""
        out: dict[str, int] = defaultdict(int)
        for entry in self.inbox:
            out[CLIENT_CLASS[entry.flow]] += entry.n
        for cohort in self.pending:
            out[cohort.cls] += cohort.open
        return dict(out)

    def latency_percentile(self, q: float) -> float | None:
        return self.ledger.percentile("queued", q)

    def step_latency(self, i: int, q: float) -> float | None:
        return weighted_percentile(self.series.latencies[i], q)
