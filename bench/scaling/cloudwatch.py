"""CloudWatch as the scaling policies see it: metrics sampled from the simulated system,
published per period after a delay, metric math, and alarms with their datapoint rules.

A datapoint of period ``k`` (``[k·P, (k+1)·P)``) becomes visible at its end plus its
namespace's publication delay (bench/scaling/aws.py), drawn once per namespace and period
from the run's seed. Until then an alarm sees it as missing — which is how a late
Container Insights datapoint reaches ``FILL(desired, 0)``. SQS reports one sample per
minute (all statistics equal it), taken at the minute's end here; the other namespaces
aggregate every simulated second of the period with the metric's statistic.

Alarms evaluate every period (at most every 60 s, as CloudWatch does for standard
resolution): ALARM when at least ``datapoints_to_alarm`` of the datapoints considered
breach; which datapoints are considered, and how missing ones count, follows CloudWatch's
evaluation range (``Alarm.evaluate``).
"""

from __future__ import annotations

import ast
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bench.scaling.aws import AwsConstants, Range
from bench.scaling.terraform import AlarmSpec, MetricQuery, MetricStat

MetricKey = tuple[str, str, tuple[tuple[str, str], ...]]
EXTRA_RANGE_PERIODS = 3
"""How much further back than evaluation_periods an alarm looks for datapoints that exist.
CloudWatch retrieves "a higher number of data points than Evaluation Periods", a number it
does not publish for one-minute periods; assumed three more."""


def key_of(stat: MetricStat) -> MetricKey:
    return (stat.namespace, stat.name, stat.dimensions)


class MetricStore:
    """Per-step samples of every metric a policy reads, and their published datapoints."""

    def __init__(
        self,
        aws: AwsConstants,
        seed: int,
        step_s: float,
        log_namespaces: frozenset[str] = frozenset(),
    ) -> None:
        self.aws = aws
        self.step_s = step_s
        self.log_namespaces = log_namespaces
        """Namespaces written as EMF lines on the tasks' stdout (the pods' scaling signal):
        published by the awslogs driver, not by the collector."""
        self._rng = random.Random(seed)
        self._delays: dict[tuple[str, int, float], float] = {}
        self.samples: dict[MetricKey, list[float | None]] = {}
        """Per simulation step; None: no sample in that step (a metric written every few
        seconds)."""

    def delay_range(self, namespace: str) -> Range:
        a = self.aws
        if namespace in self.log_namespaces:
            return a.emf_log_publication_delay_s
        return {
            "AWS/SQS": a.sqs_publication_delay_s,
            "ECS/ContainerInsights": a.container_insights_publication_delay_s,
            "AWS/ECS": a.ecs_publication_delay_s,
            "AWS/ApplicationELB": a.alb_publication_delay_s,
        }.get(namespace, a.emf_publication_delay_s)

    def delay(self, namespace: str, period_s: float, k: int) -> float:
        key = (namespace, k, period_s)
        if key not in self._delays:
            lo, hi = self.delay_range(namespace)
            self._delays[key] = self._rng.uniform(lo, hi)
        return self._delays[key]

    def register(self, key: MetricKey) -> None:
        self.samples.setdefault(key, [])

    def record(self, key: MetricKey, value: float | None) -> None:
        self.samples[key].append(value)

    def datapoint(self, stat: MetricStat, k: int, now: float) -> float | None:
        """The value of period ``k`` as an alarm at ``now`` sees it (None: missing)."""
        p = stat.period_s
        end = (k + 1) * p
        if k < 0 or now < end + self.delay(stat.namespace, p, k):
            return None
        values = self.samples[key_of(stat)]
        lo, hi = round(k * p / self.step_s), round(end / self.step_s)
        window = [v for v in values[lo:hi] if v is not None]
        if not window:
            return None
        if stat.namespace == "AWS/SQS":
            return window[-1]
        kind = stat.stat
        if kind == "Sum":
            return sum(window) * self.step_s
        if kind == "Maximum":
            return max(window)
        if kind == "Minimum":
            return min(window)
        if kind == "SampleCount":
            return float(len(window))
        return sum(window) / len(window)


# --- metric math ----------------------------------------------------------------------------


class _Missing(Exception):
    pass


def _fill(value: float | None, default: float) -> float:
    return default if value is None else value


FUNCTIONS: dict[str, Callable[..., float | None]] = {
    "IF": lambda cond, a, b=0.0: a if cond else b,
    "FILL": _fill,
    "MAX": lambda *a: max(a),
    "MIN": lambda *a: min(a),
    "SUM": lambda *a: sum(a),
    "ABS": abs,
}


def evaluate_math(expression: str, values: Mapping[str, float | None]) -> float | None:
    """CloudWatch metric math on one timestamp's values (None: no datapoint). Supports
    arithmetic, comparisons, AND/OR/NOT, IF, FILL, MAX/MIN/SUM/ABS — what our alarms use.
    A missing operand outside FILL makes the result missing, as does a division by zero."""
    text = expression.replace(" AND ", " and ").replace(" OR ", " or ").replace("NOT ", "not ")
    tree = ast.parse(text, mode="eval")

    def ev(node: ast.AST, fillable: bool = False) -> float | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in values:
                raise KeyError(f"metric math: unknown id {node.id!r} in {expression!r}")
            v = values[node.id]
            if v is None and not fillable:
                raise _Missing
            return v
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            fn = node.func.id.upper()
            if fn not in FUNCTIONS:
                raise KeyError(f"metric math: {fn}() is not simulated ({expression!r})")
            args = [ev(a, fillable=fn == "FILL" and i == 0) for i, a in enumerate(node.args)]
            return FUNCTIONS[fn](*args)
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left), ev(node.right)
            assert a is not None and b is not None
            if isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Sub):
                return a - b
            if isinstance(node.op, ast.Mult):
                return a * b
            if isinstance(node.op, ast.Div):
                if b == 0:
                    raise _Missing
                return a / b
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            assert v is not None
            return -v if isinstance(node.op, ast.USub) else float(not v)
        if isinstance(node, ast.BoolOp):
            vals = [ev(v) for v in node.values]
            ok = all(vals) if isinstance(node.op, ast.And) else any(vals)
            return 1.0 if ok else 0.0
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            a, b = ev(node.left), ev(node.comparators[0])
            assert a is not None and b is not None
            op = node.ops[0]
            result = {
                ast.Gt: a > b,
                ast.GtE: a >= b,
                ast.Lt: a < b,
                ast.LtE: a <= b,
                ast.Eq: a == b,
                ast.NotEq: a != b,
            }[type(op)]
            return 1.0 if result else 0.0
        raise KeyError(f"metric math: {ast.dump(node)} is not simulated ({expression!r})")

    try:
        return ev(tree.body)
    except _Missing:
        return None


# --- alarms ------------------------------------------------------------------------------------

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "GreaterThanThreshold": lambda v, t: v > t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


@dataclass
class AlarmState:
    state: str = "INSUFFICIENT_DATA"
    value: float | None = None
    """The aggregated metric value of the last evaluation (for step sizes and targets)."""


class Alarm:
    """One CloudWatch alarm over metric queries (one of them returns the value)."""

    def __init__(
        self,
        name: str,
        queries: Sequence[MetricQuery],
        comparison: str,
        threshold: float,
        evaluation_periods: int,
        datapoints_to_alarm: int,
        treat_missing: str,
        period_s: float,
        store: MetricStore,
        aggregation: str = "Average",
    ) -> None:
        if comparison not in _COMPARISONS:
            raise KeyError(f"alarm {name}: comparison {comparison} is not simulated")
        self.name = name
        self.queries = list(queries)
        self.comparison = comparison
        self.threshold = threshold
        self.n = evaluation_periods
        self.m = datapoints_to_alarm
        self.treat_missing = treat_missing
        self.period_s = period_s
        self.store = store
        self.aggregation = aggregation
        self.status = AlarmState()
        for q in self.queries:
            if q.stat is not None:
                store.register(key_of(q.stat))
        self._result = next(q for q in self.queries if q.return_data)

    @classmethod
    def from_spec(cls, spec: AlarmSpec, store: MetricStore, aggregation: str) -> Alarm:
        return cls(
            spec.name,
            spec.queries,
            spec.comparison,
            spec.threshold,
            spec.evaluation_periods,
            spec.datapoints_to_alarm,
            spec.treat_missing,
            spec.period_s,
            store,
            aggregation,
        )

    def value(self, k: int, now: float) -> float | None:
        """The returned query's datapoint of period ``k`` as seen at ``now``."""
        values: dict[str, float | None] = {}
        for q in self.queries:
            if q.stat is not None:
                stat = q.stat
                if stat.period_s != self.period_s:
                    stat = MetricStat(
                        stat.namespace, stat.name, stat.dimensions, stat.stat, self.period_s
                    )
                values[q.id] = self.store.datapoint(stat, k, now)
        for q in self.queries:
            if q.expression is not None:
                values[q.id] = evaluate_math(q.expression, values)
        return values[self._result.id]

    def evaluate(self, now: float) -> AlarmState:
        """CloudWatch's rule (User Guide, "How alarm state is evaluated when data is
        missing"): it retrieves the datapoints of an evaluation range a few periods longer
        than ``evaluation_periods``; with at least that many real ones, the most recent of
        them decide and missing data is not treated at all; with fewer, every real one
        counts and the missing ones are filled as ``treat_missing_data`` says."""
        last = math.floor(now / self.period_s) - 1  # the last period that has ended
        compare = _COMPARISONS[self.comparison]
        span = range(last, last - self.n - EXTRA_RANGE_PERIODS, -1)
        real = [v for v in (self.value(k, now) for k in span) if v is not None]
        if len(real) >= self.n:
            real = real[: self.n]
            breaching = sum(compare(v, self.threshold) for v in real)
        elif not real and self.treat_missing in ("missing", "ignore"):
            if self.treat_missing == "missing":
                self.status = AlarmState("INSUFFICIENT_DATA", None)
            return self.status
        else:
            breaching = sum(compare(v, self.threshold) for v in real)
            if self.treat_missing == "breaching":
                breaching += self.n - len(real)
        state = "ALARM" if breaching >= self.m else "OK"
        self.status = AlarmState(state, _aggregate(real, self.aggregation) if real else None)
        return self.status


def _aggregate(values: list[float], how: str) -> float:
    """Values most recent first; ``Latest`` is what target tracking scales on."""
    if how == "Latest":
        return values[0]
    if how == "Maximum":
        return max(values)
    if how == "Minimum":
        return min(values)
    return sum(values) / len(values)
