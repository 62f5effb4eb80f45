"""The deployed policy, read from ``deploy/terraform`` the way Terraform would evaluate it.

Values come from, in order of precedence: ``--set NAME=VALUE``, the tfvars file
(``examples/production.tfvars``), the root module's variable defaults (with the
``optional(type, default)`` defaults of object types). The root's ``main.tf`` wires them
into the modules (``module "autoscaling" { worker_max_tasks = var.worker_max_tasks … }``);
an input a module block does not set takes that module's own default. Then the
autoscaling module's resources are read as they are — every scalable target, target
tracking policy, step policy and alarm, with their metric queries, cooldowns and steps —
and the compute and edge modules give the task sizes, the processes' ``QF_*`` settings,
the capacity-provider split, the ALB's health check and deregistration delay and API
Gateway's throttles.

Nothing here knows a number of the policy. A variable the simulator needs that is not
declared (renamed, say) fails with :class:`~bench.scaling.hcl.TerraformError` naming it
and the file it should be in; a policy or alarm of a shape the simulator cannot run fails
the same way, so a change to the Terraform shows up in the simulator's tests.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import hcl2

from bench.scaling.hcl import (
    Evaluator,
    Symbol,
    TerraformError,
    Unresolvable,
    Value,
    literal,
    unquote,
)
from bench.scaling.hcl import blocks as _blocks
from bench.scaling.hcl import expand_blocks as _expand
from bench.scaling.hcl import one_block as _one
from bench.scaling.tfedge import EdgeReader, EdgeSpec, Throttle
from queuefront.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = ROOT / "deploy" / "terraform"
TFVARS = TERRAFORM_DIR / "examples" / "production.tfvars"
SERVICES = ("api", "worker", "writer")
_META = {"source", "providers", "depends_on", "count", "for_each", "version"}
SIMULATED_RESOURCES = {
    "aws_appautoscaling_target",
    "aws_appautoscaling_policy",
    "aws_appautoscaling_scheduled_action",
    "aws_cloudwatch_metric_alarm",
}
"""What the autoscaling module may hold; anything else (a scheduled action, say) changes
the scaling in a way the simulator would not see, so reading it fails instead."""


# --- files ------------------------------------------------------------------------------


class _Missing:
    def __repr__(self) -> str:
        return "<no default>"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class TypeSpec:
    """A variable's type, as far as defaults go: object attributes with their optional
    defaults, and the element type of maps and lists."""

    kind: str
    attributes: Mapping[str, tuple[TypeSpec, Value]] = field(default_factory=dict)
    """name → (type, default); the default is MISSING for a required attribute."""
    element: TypeSpec | None = None


ANY = TypeSpec("any")


def _type_functions() -> dict[str, Any]:
    def object_(attrs: Mapping[str, Value]) -> TypeSpec:
        out: dict[str, tuple[TypeSpec, Value]] = {}
        for name, spec in attrs.items():
            if isinstance(spec, tuple) and spec[0] == "optional":
                out[name] = (spec[1], spec[2])
            else:
                out[name] = (spec if isinstance(spec, TypeSpec) else ANY, MISSING)
        return TypeSpec("object", out)

    def optional(spec: TypeSpec, default: Value = None) -> tuple[str, TypeSpec, Value]:
        return ("optional", spec, default)

    def collection(kind: str) -> Any:
        return lambda spec: TypeSpec(kind, element=spec)

    return {
        "object": object_,
        "optional": optional,
        "map": collection("map"),
        "list": collection("list"),
        "set": collection("list"),
        "tuple": lambda specs: TypeSpec("tuple"),
    }


def _parse_type(text: Value) -> TypeSpec:
    if not isinstance(text, str):
        return ANY
    names = {n: TypeSpec(n) for n in ("number", "string", "bool", "any")}
    try:
        spec = Evaluator(lambda n: names.get(n, ANY), _type_functions()).value(text)
    except TerraformError:
        return ANY
    return spec if isinstance(spec, TypeSpec) else ANY


def with_defaults(value: Value, spec: TypeSpec) -> Value:
    """Terraform's conversion of a value to its type: absent optional attributes get
    their defaults (recursively)."""
    if value is None:
        return None
    if spec.kind == "object" and isinstance(value, Mapping):
        out = dict(value)
        for name, (sub, default) in spec.attributes.items():
            if out.get(name) is None and default is not MISSING:
                out[name] = default
            if name in out:
                out[name] = with_defaults(out[name], sub)
        return out
    if spec.kind == "map" and isinstance(value, Mapping) and spec.element is not None:
        return {k: with_defaults(v, spec.element) for k, v in value.items()}
    if spec.kind == "list" and isinstance(value, list) and spec.element is not None:
        return [with_defaults(v, spec.element) for v in value]
    return value


@dataclass(frozen=True)
class Variable:
    name: str
    default: Value
    type: TypeSpec


_FILES: dict[tuple[Path, tuple[tuple[str, int], ...]], ModuleFiles] = {}
_DOCS: dict[str, dict[str, Any]] = {}


def _parse(path: Path) -> dict[str, Any]:
    """python-hcl2's parse of a file, once per content (parsing takes most of a short run,
    and the tests parse edited copies that share most files with the original)."""
    text = path.read_text()
    key = hashlib.sha256(text.encode()).hexdigest()
    if key not in _DOCS:
        _DOCS[key] = hcl2.loads(text)
    return _DOCS[key]


class ModuleFiles:
    """Every ``*.tf`` file of one module directory, parsed once."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.variables: dict[str, Variable] = {}
        self.locals: dict[str, Value] = {}
        self.resources: dict[tuple[str, str], dict[str, Value]] = {}
        self.modules: dict[str, dict[str, Value]] = {}
        files = sorted(directory.glob("*.tf"))
        if not files:
            raise TerraformError(f"no Terraform files in {directory}")
        for path in files:
            doc = _parse(path)
            for block in doc.get("variable", []):
                for name, body in block.items():
                    n = unquote(name)
                    default = literal(body["default"]) if "default" in body else MISSING
                    self.variables[n] = Variable(n, default, _parse_type(body.get("type")))
            for block in doc.get("locals", []):
                self.locals.update({k: v for k, v in block.items() if not k.startswith("__")})
            for block in doc.get("resource", []):
                for rtype, named in block.items():
                    for rname, body in named.items():
                        self.resources[(unquote(rtype), unquote(rname))] = body
            for block in doc.get("module", []):
                for name, body in block.items():
                    self.modules[unquote(name)] = body

    @classmethod
    def of(cls, directory: Path) -> ModuleFiles:
        """Parsed once per directory and content (parsing is most of a short run's time)."""
        key = (
            directory,
            tuple((p.name, p.stat().st_mtime_ns) for p in sorted(directory.glob("*.tf"))),
        )
        if key not in _FILES:
            _FILES[key] = cls(directory)
        return _FILES[key]

    def where(self, what: str) -> str:
        return (
            f"{what} in {self.dir.relative_to(ROOT) if self.dir.is_relative_to(ROOT) else self.dir}"
        )


# --- scopes -------------------------------------------------------------------------------


class _Lazy(Mapping[str, Value]):
    """``var`` or ``local`` of a scope: values computed on first use, errors that name the
    missing thing."""

    def __init__(self, scope: Scope, kind: str) -> None:
        self._scope, self._kind = scope, kind

    def __getitem__(self, name: str) -> Value:
        return self._scope.var(name) if self._kind == "var" else self._scope.local(name)

    def __contains__(self, name: object) -> bool:
        self[str(name)]  # raises a TerraformError naming what is missing
        return True

    def __iter__(self) -> Iterator[str]:
        files = self._scope.files
        return iter(files.variables if self._kind == "var" else files.locals)

    def __len__(self) -> int:
        files = self._scope.files
        return len(files.variables if self._kind == "var" else files.locals)


class Scope:
    """One module instance: its variables' values and its locals, evaluated on demand."""

    def __init__(self, files: ModuleFiles, inputs: Mapping[str, Value], label: str) -> None:
        self.files = files
        self.label = label
        self._inputs = inputs
        self._vars: dict[str, Value] = {}
        self._locals: dict[str, Value] = {}
        self.extra: dict[str, Value] = {}
        self.evaluator = Evaluator(self._resolve, {"file": self._file})

    def _file(self, path: str) -> str:
        """``file()``: the module's own files only (what ``path.module`` names)."""
        target = Path(path)
        if not target.is_absolute():
            target = self.files.dir / target
        try:
            return target.read_text()
        except OSError as exc:
            raise TerraformError(f"{self.label}: file({path!r}): {exc}") from None

    def _resolve(self, name: str) -> Value:
        if name in self.extra:
            return self.extra[name]
        if name == "path":
            return {"module": str(self.files.dir), "root": str(self.files.dir)}
        if name == "var":
            return _Lazy(self, "var")
        if name == "local":
            return _Lazy(self, "local")
        return Symbol(name)

    def var(self, name: str) -> Value:
        if name in self._vars:
            return self._vars[name]
        decl = self.files.variables.get(name)
        if decl is None:
            raise TerraformError(
                f"{self.label}: var.{name} is not declared ({self.files.where('variables.tf')})"
            )
        raw = self._inputs.get(name, MISSING)
        if callable(raw):
            raw = raw()
        if raw is MISSING:
            raw = decl.default
        if raw is MISSING:
            raise TerraformError(f"{self.label}: var.{name} has no value and no default")
        self._vars[name] = value = with_defaults(raw, decl.type)
        return value

    def local(self, name: str) -> Value:
        if name not in self._locals:
            if name not in self.files.locals:
                raise TerraformError(f"{self.label}: local.{name} is not defined")
            self._locals[name] = self.evaluator.value(self.files.locals[name])
        return self._locals[name]

    def value(self, raw: Value, **extra: Value) -> Value:
        saved = dict(self.extra)
        self.extra.update(extra)
        try:
            return self.evaluator.value(raw)
        finally:
            self.extra = saved

    def number(self, raw: Value, where: str, **extra: Value) -> float:
        value = self.value(raw, **extra)
        if isinstance(value, Symbol):
            raise Unresolvable(f"{self.label}: {where} = {value.ref} is only known at apply time")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TerraformError(f"{self.label}: {where} is {value!r}, not a number")
        return float(value)

    def child(self, name: str) -> Scope:
        """The scope of ``module "<name>"`` as this module's ``main.tf`` wires it."""
        body = self.files.modules.get(name)
        if body is None:
            raise TerraformError(
                f"{self.label}: no module {name!r} ({self.files.where('main.tf')})"
            )
        source = unquote(str(body["source"]))
        files = ModuleFiles.of((self.files.dir / source).resolve())
        inputs = {
            k: (lambda raw=raw: self.value(raw))
            for k, raw in body.items()
            if k not in _META and not k.startswith("__")
        }
        return Scope(files, inputs, f"module.{name}")

    def resource(self, rtype: str, name: str) -> dict[str, Value]:
        body = self.files.resources.get((rtype, name))
        if body is None:
            raise TerraformError(f"{self.label}: no resource {rtype}.{name}")
        return body


def _tfvars(path: Path) -> dict[str, Value]:
    return {k: literal(v) for k, v in _parse(path).items() if not k.startswith("__")}


def parse_override(text: str) -> tuple[list[str], Value]:
    """``NAME=VALUE`` (``NAME`` may be dotted into an object: ``settings.worker_concurrency``);
    the value is read as JSON (numbers, true/false, "strings", objects), else as text."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise TerraformError(f"--set expects NAME=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name.strip().split("."), value


def root_scope(
    terraform_dir: Path = TERRAFORM_DIR,
    tfvars: Path | None = TFVARS,
    overrides: Mapping[str, Value] | None = None,
) -> Scope:
    """The root module with the tfvars file and ``--set`` overrides applied."""
    files = ModuleFiles.of(terraform_dir)
    values: dict[str, Value] = dict(_tfvars(tfvars)) if tfvars is not None else {}
    for dotted, value in (overrides or {}).items():
        path = dotted.split(".")
        if path[0] not in files.variables:
            raise TerraformError(
                f"--set {dotted}: no variable {path[0]!r} in {files.where('variables.tf')}"
            )
        if len(path) == 1:
            values[path[0]] = value
            continue
        base = values.get(path[0], files.variables[path[0]].default)
        target = dict(base) if isinstance(base, Mapping) else {}
        values[path[0]] = node = target
        for key in path[1:-1]:
            node[key] = dict(node.get(key) or {})
            node = node[key]
        node[path[-1]] = value
    for name in values:
        if name not in files.variables:
            raise TerraformError(f"{tfvars}: {name!r} is not a variable of {terraform_dir}")
    return Scope(files, values, "root")


# --- what the simulator runs -----------------------------------------------------------------


@dataclass(frozen=True)
class MetricStat:
    """One CloudWatch metric with a statistic; dimensions name simulated entities: a
    queue (``high``, ``normal``, ``ingest``), a service (``api``…) or ``cluster``."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str
    period_s: float

    def dim(self, key: str) -> str | None:
        return dict(self.dimensions).get(key)


@dataclass(frozen=True)
class MetricQuery:
    id: str
    stat: MetricStat | None
    expression: str | None
    return_data: bool


@dataclass(frozen=True)
class AlarmSpec:
    name: str
    queries: tuple[MetricQuery, ...]
    comparison: str
    threshold: float
    evaluation_periods: int
    datapoints_to_alarm: int
    treat_missing: str
    period_s: float


@dataclass(frozen=True)
class StepAdjustment:
    lower: float | None
    upper: float | None
    adjustment: float


@dataclass(frozen=True)
class StepPolicySpec:
    name: str
    service: str
    adjustment_type: str
    steps: tuple[StepAdjustment, ...]
    cooldown_s: float
    min_adjustment_magnitude: float | None
    aggregation: str
    alarm: AlarmSpec


@dataclass(frozen=True)
class TargetTrackingSpec:
    name: str
    service: str
    target: float
    scale_out_cooldown_s: float
    scale_in_cooldown_s: float
    disable_scale_in: bool
    queries: tuple[MetricQuery, ...]
    period_s: float


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    cpu_units: int
    memory_mib: int
    min_tasks: int
    max_tasks: int
    initial_tasks: int
    on_demand_base: int
    """Tasks on regular Fargate before the Spot split applies."""
    spot_share: float
    """Share of the tasks beyond ``on_demand_base`` that run on Fargate Spot."""
    settings: Mapping[str, Any]
    """The process's QF settings: queuefront.settings defaults + what Terraform sets."""
    deployment_maximum_percent: float = 200.0
    deployment_minimum_healthy_percent: float = 100.0
    """The ECS service's deployment settings (the worker's maximum is derived from its
    minimum count: modules/compute, main.tf's local)."""


@dataclass(frozen=True)
class ScheduledActionSpec:
    """An ``aws_appautoscaling_scheduled_action``: at ``at`` (UTC), the service's scalable
    target gets these minimum and maximum capacities."""

    name: str
    service: str
    at: datetime
    min_tasks: int | None
    max_tasks: int | None


@dataclass(frozen=True)
class Policy:
    services: Mapping[str, ServiceSpec]
    target_tracking: tuple[TargetTrackingSpec, ...]
    step_policies: tuple[StepPolicySpec, ...]
    reply_window_s: float
    backend_max_concurrency: int
    stop_timeout_s: float
    deregistration_delay_s: float
    alb_healthy_after_s: float
    """ALB health check interval x healthy threshold: how long a new api task waits for
    traffic after it starts."""
    default_throttle: Throttle
    route_throttles: Mapping[str, Throttle]
    queues: Mapping[str, Mapping[str, Value]]
    """high, normal, ingest: retention, visibility timeout, … as the root derives them."""
    values: Mapping[str, Value]
    """The root variables as evaluated (tfvars + defaults + overrides), for the report."""
    scheduled: tuple[ScheduledActionSpec, ...] = ()
    signal_namespace: str = ""
    """The namespace of the api pods' scaling signal (service/scaling_signal.py)."""
    signal_metrics: Mapping[str, str] = field(default_factory=dict)
    """Its metric names by key (backlog, drain_rate, …), as Terraform reads them."""
    edge: EdgeSpec | None = None
    """What is in front of the api (bench/scaling/tfedge.py): the API Gateway's kind,
    throttles, integration timeout, direct routes, WAF web ACLs, NLBs."""
    worker_peak_backend_calls: int = 0
    """Most calls the workers can make on the backend: at full scale during a deploy
    (worker_max_tasks x the deploy's maximum percent, rounded down, x slots)."""


_PREDEFINED = {
    # ECS publishes service CPU once a minute (AWS/ECS CPUUtilization, the service average)
    "ECSServiceAverageCPUUtilization": ("AWS/ECS", "CPUUtilization", "Average", 60.0),
    # 20-second resolution variant (docs.aws.amazon.com/AmazonECS/latest/developerguide/
    # target-tracking-faster-auto-scaling.html)
    "ECSServiceAverageCPUUtilizationHighResolution": ("AWS/ECS", "CPUUtilization", "Average", 20.0),
    "ALBRequestCountPerTarget": ("AWS/ApplicationELB", "RequestCountPerTarget", "Sum", 60.0),
}


def _entity(value: Value) -> str:
    """A dimension's value → the simulated entity it names."""
    text = value.ref if isinstance(value, Symbol) else str(value)
    for pattern in (r'queue_names\["(\w+)"\]', r'service_names\["(\w+)"\]'):
        m = re.search(pattern, text)
        if m:
            return m.group(1)
    if "cluster" in text:
        return "cluster"
    return text


class PolicyReader:
    """Builds the :class:`Policy` from a root scope (see the module notes)."""

    def __init__(self, root: Scope) -> None:
        self.root = root
        self.autoscaling = root.child("autoscaling")
        self.compute = root.child("compute")
        self.edge = root.child("edge")
        self.asg = self.autoscaling

    # --- metrics ----------------------------------------------------------------------

    def _stat(
        self,
        scope: Scope,
        block: Mapping[str, Value],
        extra: dict[str, Value],
        where: str,
        period: float | None = None,
    ) -> MetricStat:
        dims_raw = block.get("dimensions")
        if isinstance(dims_raw, str):  # dimensions = local.x: a map expression
            dims_raw = scope.value(dims_raw, **extra)
        dims: list[tuple[str, str]] = []
        if isinstance(dims_raw, Mapping):  # dimensions = { Name = value } (alarms)
            for k, v in dims_raw.items():
                if not k.startswith("__"):
                    dims.append((unquote(k), _entity(scope.value(v, **extra))))
        blocks = [] if isinstance(dims_raw, Mapping) else [(d, extra) for d in _blocks(dims_raw)]
        # dynamic "dimensions" { for_each = … } (a target tracking metric's blocks)
        saved = dict(scope.extra)
        scope.extra.update(extra)
        try:
            blocks += [
                (d, {**extra, **more})
                for d, more in _expand(scope, {"dynamic": block.get("dynamic")}, "dimensions")
            ]
        finally:
            scope.extra = saved
        for d, names in blocks:
            dims.append(
                (
                    str(scope.value(d["name"], **names)),
                    _entity(scope.value(d["value"], **names)),
                )
            )
        stat = block.get("stat", block.get("statistic"))
        p = block.get("period")
        return MetricStat(
            namespace=str(scope.value(block["namespace"], **extra)),
            name=str(scope.value(block["metric_name"], **extra)),
            dimensions=tuple(sorted(dims)),
            stat=str(scope.value(stat, **extra)) if stat is not None else "Average",
            period_s=scope.number(p, f"{where} period", **extra)
            if p is not None
            else (period or 60.0),
        )

    def _queries(
        self,
        scope: Scope,
        body: Mapping[str, Value],
        key: str,
        where: str,
        period: float | None = None,
    ) -> tuple[MetricQuery, ...]:
        out = []
        for block, extra in _expand(scope, body, key):
            qid = str(scope.value(block["id"], **extra))
            expression = block.get("expression")
            stat: MetricStat | None = None
            if "metric_stat" in block:  # target tracking: metric_stat { stat, metric {…} }
                ms = _one(block, "metric_stat", where)
                metric = _one(ms, "metric", where)
                stat = self._stat(
                    scope,
                    {**metric, "stat": ms.get("stat"), "period": ms.get("period")},
                    extra,
                    where,
                    period,
                )
            elif "metric" in block:  # alarms: metric { namespace, …, stat, period }
                stat = self._stat(scope, _one(block, "metric", where), extra, where, period)
            out.append(
                MetricQuery(
                    id=qid,
                    stat=stat,
                    expression=str(scope.value(expression, **extra))
                    if expression is not None
                    else None,
                    return_data=bool(scope.value(block.get("return_data", True), **extra)),
                )
            )
        if sum(q.return_data for q in out) != 1:
            raise TerraformError(f"{where}: expected exactly one query with return_data = true")
        return tuple(out)

    # --- autoscaling ------------------------------------------------------------------

    def _target_service(self, ref: Value, where: str) -> str:
        """``aws_appautoscaling_target.<t>.resource_id`` → the ECS service it scales."""
        text = ref.ref if isinstance(ref, Symbol) else str(ref)
        m = re.match(r"aws_appautoscaling_target\.(\w+)\.", text)
        if not m:
            raise TerraformError(f"{where}: resource_id does not name a scalable target")
        target = self.asg.resource("aws_appautoscaling_target", m.group(1))
        return _entity(self.asg.value(target["resource_id"]))

    @cached_property
    def targets(self) -> dict[str, tuple[int, int]]:
        out = {}
        for (rtype, name), body in self.asg.files.resources.items():
            if rtype != "aws_appautoscaling_target":
                continue
            service = _entity(self.asg.value(body["resource_id"]))
            if service not in SERVICES:
                raise TerraformError(f"aws_appautoscaling_target.{name}: unknown service {service}")
            where = f"aws_appautoscaling_target.{name}"
            out[service] = (
                int(self.asg.number(body["min_capacity"], f"{where}.min_capacity")),
                int(self.asg.number(body["max_capacity"], f"{where}.max_capacity")),
            )
        return out

    def _exists(self, body: Mapping[str, Value], where: str) -> bool:
        """``count``: a resource of count 0 is not there; one of more is not simulated."""
        if "count" not in body:
            return True
        n = int(self.asg.number(body["count"], f"{where}.count"))
        if n > 1:
            raise TerraformError(f"{where}: count = {n} is not simulated")
        return n == 1

    def _alarms_by_policy(self) -> dict[str, AlarmSpec]:
        out = {}
        for (rtype, name), body in self.asg.files.resources.items():
            if rtype != "aws_cloudwatch_metric_alarm":
                continue
            if not self._exists(body, f"aws_cloudwatch_metric_alarm.{name}"):
                continue
            where = f"aws_cloudwatch_metric_alarm.{name}"
            actions = self.asg.value(body.get("alarm_actions", []))
            refs = [a.ref for a in actions if isinstance(a, Symbol)]
            found = (re.match(r"aws_appautoscaling_policy\.(\w+)\.arn", r) for r in refs)
            policies = [m for m in found if m]
            if not policies:
                continue  # a notification, not a scaling action
            period = body.get("period")
            if "metric_query" in body:
                queries = self._queries(self.asg, body, "metric_query", where)
                periods = {q.stat.period_s for q in queries if q.stat}
                if len(periods) != 1:
                    raise TerraformError(f"{where}: metric queries of different periods")
                alarm_period = periods.pop()
            else:
                alarm_period = self.asg.number(period, f"{where}.period")
                stat = self._stat(self.asg, body, {}, where, alarm_period)
                queries = (MetricQuery("m", stat, None, True),)
            n = int(self.asg.number(body["evaluation_periods"], f"{where}.evaluation_periods"))
            m = int(self.asg.number(body.get("datapoints_to_alarm", n), f"{where}.datapoints"))
            spec = AlarmSpec(
                name=name,
                queries=queries,
                comparison=str(self.asg.value(body["comparison_operator"])),
                threshold=self.asg.number(body["threshold"], f"{where}.threshold"),
                evaluation_periods=n,
                datapoints_to_alarm=m,
                treat_missing=str(self.asg.value(body.get("treat_missing_data", '"missing"'))),
                period_s=alarm_period,
            )
            for match in policies:
                assert match is not None
                out[match.group(1)] = spec
        return out

    def policies(self) -> tuple[tuple[TargetTrackingSpec, ...], tuple[StepPolicySpec, ...]]:
        for rtype, name in self.asg.files.resources:
            if rtype not in SIMULATED_RESOURCES:
                raise TerraformError(
                    f"module.autoscaling: {rtype}.{name} is not simulated (the simulator runs "
                    f"{', '.join(sorted(SIMULATED_RESOURCES))}): teach bench/scaling about it"
                )
        alarms = self._alarms_by_policy()
        tts: list[TargetTrackingSpec] = []
        steps: list[StepPolicySpec] = []
        for (rtype, name), body in self.asg.files.resources.items():
            if rtype != "aws_appautoscaling_policy":
                continue
            where = f"aws_appautoscaling_policy.{name}"
            if not self._exists(body, where):
                continue
            service = self._target_service(self.asg.value(body["resource_id"]), where)
            kind = str(self.asg.value(body.get("policy_type", '"StepScaling"')))
            if kind == "TargetTrackingScaling":
                tts.append(self._target_tracking(name, service, body, where))
            elif kind == "StepScaling":
                if name not in alarms:
                    raise TerraformError(f"{where}: no alarm of this module invokes it")
                steps.append(self._step(name, service, body, alarms[name], where))
            else:
                raise TerraformError(f"{where}: policy type {kind} is not simulated")
        return tuple(tts), tuple(steps)

    def _target_tracking(
        self, name: str, service: str, body: Mapping[str, Value], where: str
    ) -> TargetTrackingSpec:
        cfg = _one(body, "target_tracking_scaling_policy_configuration", where)
        num = self.asg.number
        if "predefined_metric_specification" in cfg:
            spec = _one(cfg, "predefined_metric_specification", where)
            kind = str(self.asg.value(spec["predefined_metric_type"]))
            if kind not in _PREDEFINED:
                raise TerraformError(f"{where}: predefined metric {kind} is not simulated")
            ns, metric, stat, period = _PREDEFINED[kind]
            dim = "TargetGroup" if ns == "AWS/ApplicationELB" else "ServiceName"
            queries: tuple[MetricQuery, ...] = (
                MetricQuery(
                    "m", MetricStat(ns, metric, ((dim, service),), stat, period), None, True
                ),
            )
        else:
            spec = _one(cfg, "customized_metric_specification", where)
            queries = self._queries(self.asg, spec, "metrics", where)
        periods = {q.stat.period_s for q in queries if q.stat}
        return TargetTrackingSpec(
            name=name,
            service=service,
            target=num(cfg["target_value"], f"{where}.target_value"),
            # Application Auto Scaling's default cooldowns for ECS are 300 s (API reference,
            # TargetTrackingScalingPolicyConfiguration)
            scale_out_cooldown_s=num(cfg.get("scale_out_cooldown", 300), f"{where}.scale_out"),
            scale_in_cooldown_s=num(cfg.get("scale_in_cooldown", 300), f"{where}.scale_in"),
            disable_scale_in=bool(self.asg.value(cfg.get("disable_scale_in", False))),
            queries=queries,
            period_s=min(periods) if periods else 60.0,
        )

    def _step(
        self, name: str, service: str, body: Mapping[str, Value], alarm: AlarmSpec, where: str
    ) -> StepPolicySpec:
        cfg = _one(body, "step_scaling_policy_configuration", where)
        num = self.asg.number
        adjustments = []
        for block in _blocks(cfg.get("step_adjustment")):
            lo, hi = (
                block.get("metric_interval_lower_bound"),
                block.get("metric_interval_upper_bound"),
            )
            adjustments.append(
                StepAdjustment(
                    lower=num(lo, f"{where} lower bound") if lo is not None else None,
                    upper=num(hi, f"{where} upper bound") if hi is not None else None,
                    adjustment=num(block["scaling_adjustment"], f"{where} adjustment"),
                )
            )
        mag = cfg.get("min_adjustment_magnitude")
        return StepPolicySpec(
            name=name,
            service=service,
            adjustment_type=str(self.asg.value(cfg["adjustment_type"])),
            steps=tuple(adjustments),
            cooldown_s=num(cfg.get("cooldown", 0), f"{where}.cooldown"),
            min_adjustment_magnitude=num(mag, f"{where}.min_adjustment")
            if mag is not None
            else None,
            aggregation=str(self.asg.value(cfg.get("metric_aggregation_type", '"Average"'))),
            alarm=alarm,
        )

    def scheduled(self) -> tuple[ScheduledActionSpec, ...]:
        """Every ``aws_appautoscaling_scheduled_action`` (``for_each`` expanded). Only
        one-time ``at(…)`` schedules are simulated; a recurring one fails the read."""
        out: list[ScheduledActionSpec] = []
        for (rtype, name), body in self.asg.files.resources.items():
            if rtype != "aws_appautoscaling_scheduled_action":
                continue
            where = f"aws_appautoscaling_scheduled_action.{name}"
            if "for_each" in body:
                items = self.asg.value(body["for_each"])
                pairs = list(items.items() if isinstance(items, Mapping) else enumerate(items))
            else:
                pairs = [(None, None)] if self._exists(body, where) else []
            for key, value in pairs:
                each: dict[str, Value] = {"key": key, "value": value}

                def v(raw: Value, each: dict[str, Value] = each) -> Value:
                    return self.asg.value(raw, each=each)

                schedule = str(v(body["schedule"]))
                m = re.fullmatch(r"at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)", schedule)
                if not m:
                    raise TerraformError(
                        f"{where}: schedule {schedule!r} is not simulated (only at(...))"
                    )
                zone = ZoneInfo(str(v(body.get("timezone", '"UTC"'))))
                at = datetime.fromisoformat(m.group(1)).replace(tzinfo=zone)
                action = _one(body, "scalable_target_action", where)
                lo, hi = action.get("min_capacity"), action.get("max_capacity")
                spec = ScheduledActionSpec(
                    name=str(v(body["name"])),
                    service=self._target_service(v(body["resource_id"]), where),
                    at=at.astimezone(ZoneInfo("UTC")),
                    min_tasks=int(self.asg.number(lo, f"{where}.min", each=each))
                    if lo is not None
                    else None,
                    max_tasks=int(self.asg.number(hi, f"{where}.max", each=each))
                    if hi is not None
                    else None,
                )
                # Application Auto Scaling refuses a minimum above the maximum: the
                # simulator must not run an action the apply would not create
                top = (
                    spec.max_tasks if spec.max_tasks is not None else self.targets[spec.service][1]
                )
                if spec.min_tasks is not None and spec.min_tasks > top:
                    raise TerraformError(
                        f"{where}[{key!r}]: minimum {spec.min_tasks} above the maximum {top} "
                        f"of {spec.service} (Application Auto Scaling refuses it)"
                    )
                out.append(spec)
        return tuple(sorted(out, key=lambda a: a.at))

    # --- services ---------------------------------------------------------------------

    def _settings(self, service: str) -> dict[str, Any]:
        """queuefront.settings defaults, overlaid with the QF_* environment compute gives
        this process (values only known at apply time, such as queue names, are left)."""
        out: dict[str, Any] = {
            n: f.default for n, f in Settings.model_fields.items() if f.default is not None
        }
        env = self.compute.local("environment")
        if service not in env:
            raise TerraformError(f"module.compute: local.environment has no {service!r}")
        for key, value in env[service].items():
            name = key.removeprefix("QF_").lower()
            if name not in Settings.model_fields or not isinstance(value, str) or "${" in value:
                continue
            default = out.get(name)
            if isinstance(default, bool):
                out[name] = value == "true"
            elif isinstance(default, int):
                out[name] = int(float(value))
            elif isinstance(default, float):
                out[name] = float(value)
            else:
                out[name] = value
        return out

    def _capacity_split(self, service: str) -> tuple[int, float]:
        """(on-demand base, Spot share beyond it) from the ECS service's capacity-provider
        strategy."""
        body = self.compute.resource("aws_ecs_service", "this")
        each = {"key": service, "value": None}
        base, weights = 0.0, {"FARGATE": 0.0, "FARGATE_SPOT": 0.0}
        strategies = []
        for block, extra in _expand_with(self.compute, body, "capacity_provider_strategy", each):
            strategies.append(
                (
                    str(self.compute.value(block["capacity_provider"], each=each, **extra)),
                    self.compute.number(block.get("base", 0), "base", each=each, **extra),
                    self.compute.number(block.get("weight", 0), "weight", each=each, **extra),
                )
            )
        for provider, b, w in strategies:
            base += b
            weights[provider] = weights.get(provider, 0.0) + w
        total = sum(weights.values())
        return int(base), (weights.get("FARGATE_SPOT", 0.0) / total if total else 0.0)

    def services(self) -> dict[str, ServiceSpec]:
        sizes = self.root.var("services")
        out: dict[str, ServiceSpec] = {}
        for name in SERVICES:
            if name not in self.targets:
                raise TerraformError(f"module.autoscaling: no scalable target for {name}")
            lo, hi = self.targets[name]
            size = sizes.get(name)
            if size is None:
                raise TerraformError(f"var.services has no {name!r}")
            base, spot = self._capacity_split(name)
            deploy = self._deployment(name)
            out[name] = ServiceSpec(
                name=name,
                cpu_units=int(size["cpu"]),
                memory_mib=int(size["memory"]),
                min_tasks=lo,
                max_tasks=hi,
                # Application Auto Scaling keeps the count within [min, max]
                initial_tasks=min(hi, max(lo, int(size.get("desired_count") or 0))),
                on_demand_base=base,
                spot_share=spot,
                settings=self._settings(name),
                deployment_maximum_percent=deploy[0],
                deployment_minimum_healthy_percent=deploy[1],
            )
        return out

    def _deployment(self, service: str) -> tuple[float, float]:
        """(maximum percent, minimum healthy percent) of the service's ECS deployments."""
        body = self.compute.resource("aws_ecs_service", "this")
        each = {"key": service, "value": None}
        where = f"module.compute: aws_ecs_service.this[{service!r}]"
        return (
            self.compute.number(body["deployment_maximum_percent"], where, each=each),
            self.compute.number(body["deployment_minimum_healthy_percent"], where, each=each),
        )

    def check_preconditions(self, scope: Scope) -> None:
        """The ``precondition`` blocks of a module's resources, as ``terraform plan``
        checks them: a policy Terraform would refuse is not simulated. A condition on a
        value only known at apply time is left to the apply."""
        for (rtype, name), body in scope.files.resources.items():
            conditions = [
                p
                for life in _blocks(body.get("lifecycle"))
                for p in _blocks(life.get("precondition"))
            ]
            if not conditions:
                continue
            where = f"{scope.label}: {rtype}.{name}"
            if "for_each" in body:
                items = scope.value(body["for_each"])
                pairs = items.items() if isinstance(items, Mapping) else enumerate(items)
                instances: list[dict[str, Value]] = [
                    {"each": {"key": k, "value": v}} for k, v in pairs
                ]
            else:
                instances = [{}] if self._exists_in(scope, body, where) else []
            for extra in instances:
                for p in conditions:
                    try:
                        ok = scope.value(p["condition"], **extra)
                    except Unresolvable:
                        continue
                    if isinstance(ok, Symbol):
                        continue
                    if ok is not True:
                        message = scope.value(
                            p.get("error_message", '"precondition failed"'), **extra
                        )
                        raise TerraformError(f"{where}: the plan fails: {message}")

    @staticmethod
    def _exists_in(scope: Scope, body: Mapping[str, Value], where: str) -> bool:
        return "count" not in body or int(scope.number(body["count"], f"{where}.count")) > 0

    def read(self) -> Policy:
        tts, steps = self.policies()
        self.check_preconditions(self.asg)
        self.check_preconditions(self.edge)
        signal = (
            self.asg.var("scaling_signal") if "scaling_signal" in self.asg.files.variables else None
        )
        hc = _one(self.edge.resource("aws_lb_target_group", "api"), "health_check", "edge")
        edge = EdgeReader(self.edge).read()
        return Policy(
            services=self.services(),
            target_tracking=tts,
            step_policies=steps,
            reply_window_s=float(self.root.var("reply_window_s")),
            backend_max_concurrency=int(self.asg.var("backend_max_concurrency")),
            stop_timeout_s=float(self.compute.var("stop_timeout_s")),
            deregistration_delay_s=float(self.edge.var("deregistration_delay_s")),
            alb_healthy_after_s=self.edge.number(hc["interval"], "health_check.interval")
            * self.edge.number(hc["healthy_threshold"], "health_check.healthy_threshold"),
            default_throttle=edge.default_throttle,
            route_throttles=edge.route_throttles,
            queues=self.root.local("queues"),
            values={
                n: self.root.var(n) for n in self.root.files.variables if _has_value(self.root, n)
            },
            scheduled=self.scheduled(),
            # a policy without the pods' signal (an older Terraform) reads none of it
            signal_namespace=str(signal["namespace"]) if signal else "",
            signal_metrics=dict(signal["metrics"]) if signal else {},
            edge=edge,
            worker_peak_backend_calls=int(self.asg.local("worker_peak_backend_calls")),
        )


def _expand_with(
    scope: Scope, body: Mapping[str, Value], key: str, each: Mapping[str, Value]
) -> list[tuple[dict[str, Value], dict[str, Value]]]:
    saved = dict(scope.extra)
    scope.extra["each"] = each
    try:
        return _expand(scope, body, key)
    finally:
        scope.extra = saved


def _has_value(scope: Scope, name: str) -> bool:
    try:
        scope.var(name)
    except TerraformError:
        return False
    return True


def load_policy(
    overrides: Mapping[str, Value] | None = None,
    terraform_dir: Path = TERRAFORM_DIR,
    tfvars: Path | None = TFVARS,
) -> Policy:
    """The policy the simulator runs: ``deploy/terraform`` with the tfvars and overrides."""
    return PolicyReader(root_scope(terraform_dir, tfvars, overrides)).read()
