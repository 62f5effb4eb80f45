"""The pod's scaling signal: what it knows about the load, every few seconds, as one
CloudWatch embedded-metric-format (EMF) line on stdout.

Why: the autoscaling that matters in a burst cannot wait for SQS's own metrics — one
datapoint a minute, published a minute or more late, and target tracking wants three in a
row. A pod already knows within a second what the scaling needs: it reads the queues'
backlog every ``QF_BACKLOG_POLL_S`` and the workers' drain reports in the same poll
(``service.admission.BacklogMonitor``), and it knows its own CPU and the requests it
refused. Writing that as an EMF document on stdout publishes it without a CloudWatch API
call per datapoint and without a dependency: the task's ``awslogs`` log driver ships
stdout to CloudWatch Logs (deploy/terraform/modules/compute), and CloudWatch Logs turns
every EMF line into metric values (Amazon CloudWatch User Guide, "Specification: Embedded
metric format"; no ``x-amzn-logs-format`` header is needed). ``StorageResolution`` 1 makes
them high-resolution metrics, so an alarm can read them in 10-second periods; the awslogs
driver sends its batch every 5 s (moby ``daemon/logger/awslogs``:
``batchPublishFrequency``), within the 5 s flush AWS recommends for alarms on EMF
metrics ("Setting alarms on metrics created with the embedded metric format").

What is published (names in ``METRICS``; Terraform reads the same names from
deploy/terraform/scaling_signal.json, which a unit test keeps equal to this module):

- ``QueueBacklog``: visible messages of the high and normal queues, as last read;
- ``DrainRate``: messages per second the workers complete (the pod's estimate);
- ``DrainCapacity``: what the live workers could complete per second if busy (their
  slots ÷ the measured service time); left out until a service time was measured;
- ``PredictedWait``: seconds a normal request admitted now would wait for a worker;
- ``AdmissionRefusals``: requests this pod refused with 503 since its last line;
- ``PendingReplies``: requests waiting for replies in this pod (its pending bound's use);
- ``CpuUtilization``: this process's CPU over the interval, percent of one core.

Every pod sees the same queues and drain reports, so the queue figures are the same in
each pod's line and an alarm reads them with ``Average`` or ``Maximum``; the per-pod
figures (refusals: ``Sum``; CPU and pending: ``Average``) add up across pods. The
dimensions are the ones Terraform gives (``QF_SCALING_SIGNAL_DIMENSIONS``): one series
per stack, whatever the number of tasks — never a per-task dimension, which would make
a custom metric per task.

Nothing is written while the backlog reads fail (``BacklogMonitor.healthy``): a stale
figure would scale on a queue nobody can see; the alarms treat the gap as missing data.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from queuefront import metrics, tasks
from queuefront.drain import DrainEstimate
from queuefront.telemetry import get_logger

log = get_logger(__name__)

STORAGE_RESOLUTION_S = 1
"""EMF's ``StorageResolution``: 1 stores the values at one-second resolution (a
high-resolution custom metric that 10 s and 30 s alarms can read); 60 would store them
per minute."""
MAX_DIMENSIONS = 9
"""A DimensionSet holds at most 9 keys (EMF specification, DimensionSet array)."""

METRICS: Mapping[str, tuple[str, str]] = {
    # key: (metric name, CloudWatch unit)
    "backlog": ("QueueBacklog", "Count"),
    "drain_rate": ("DrainRate", "Count/Second"),
    "drain_capacity": ("DrainCapacity", "Count/Second"),
    "predicted_wait": ("PredictedWait", "Seconds"),
    "refusals": ("AdmissionRefusals", "Count"),
    "pending": ("PendingReplies", "Count"),
    "cpu": ("CpuUtilization", "Percent"),
}
"""Everything the line may carry. deploy/terraform/scaling_signal.json lists the same
names: the alarms read them from there."""


class Monitor(Protocol):
    """What the signal reads of ``service.admission.BacklogMonitor``."""

    @property
    def backlog(self) -> Mapping[Any, int]: ...

    @property
    def estimate(self) -> DrainEstimate: ...

    @property
    def healthy(self) -> bool: ...

    def predicted_wait_s(self, priority: Any) -> float: ...


def parse_dimensions(text: str) -> dict[str, str]:
    """``QF_SCALING_SIGNAL_DIMENSIONS``: ``Name=value`` pairs, comma-separated."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"a scaling signal dimension must be Name=value, got {part!r}")
        out[name.strip()] = value.strip()
    if len(out) > MAX_DIMENSIONS:
        raise ValueError(f"at most {MAX_DIMENSIONS} scaling signal dimensions")
    if set(out) & {name for name, _ in METRICS.values()} or "_aws" in out:
        raise ValueError("a scaling signal dimension may not be named like a metric or _aws")
    return out


def refusals_total() -> float:
    """Admission 503s this process has answered (queuefront_admission_rejections_total,
    every route and reason)."""
    total = 0.0
    for family in metrics.ADMISSION_REJECTIONS.collect():
        total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


@dataclass(frozen=True)
class Sample:
    """One line's values (None: not known, left out of the line)."""

    backlog: int
    drain_rate: float
    drain_capacity: float | None
    predicted_wait: float | None
    refusals: float
    pending: int
    cpu: float | None


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def sample(monitor: Monitor, refusals: float, pending: int, cpu_percent: float | None) -> Sample:
    """The monitor's state as the line carries it."""
    estimate = monitor.estimate
    return Sample(
        backlog=int(sum(monitor.backlog.values())),
        drain_rate=max(0.0, estimate.rate),
        drain_capacity=_finite(estimate.potential) if estimate.live_workers else 0.0,
        predicted_wait=_finite(monitor.predicted_wait_s("normal")),
        refusals=max(0.0, refusals),
        pending=pending,
        cpu=cpu_percent,
    )


def document(
    values: Sample, namespace: str, dimensions: Mapping[str, str], timestamp_ms: int
) -> dict[str, Any]:
    """The EMF document of one sample: every known value a root member, declared as a
    high-resolution metric of ``namespace`` with ``dimensions`` (also root members)."""
    root: dict[str, Any] = dict(dimensions)
    definitions = []
    for key, (name, unit) in METRICS.items():
        value = getattr(values, key)
        if value is None:
            continue  # a declared metric must be present: leave unknown ones out
        root[name] = round(float(value), 6)
        definitions.append({"Name": name, "Unit": unit, "StorageResolution": STORAGE_RESOLUTION_S})
    root["_aws"] = {
        "Timestamp": timestamp_ms,
        "CloudWatchMetrics": [
            {"Namespace": namespace, "Dimensions": [sorted(dimensions)], "Metrics": definitions}
        ],
    }
    return root


class CpuMeter:
    """This process's CPU since the last reading, as a percentage of one core."""

    def __init__(
        self,
        cpu_s: Callable[[], float] = time.process_time,
        wall_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cpu_s, self._wall_s = cpu_s, wall_s
        self._cpu, self._wall = cpu_s(), wall_s()

    def read(self) -> float | None:
        cpu, wall = self._cpu_s(), self._wall_s()
        spent, elapsed = cpu - self._cpu, wall - self._wall
        self._cpu, self._wall = cpu, wall
        if elapsed <= 0:
            return None
        return max(0.0, 100.0 * spent / elapsed)


class ScalingSignal:
    """Writes one EMF line every ``interval_s`` while the pod runs."""

    def __init__(
        self,
        monitor: Monitor,
        pending: Callable[[], int],
        *,
        interval_s: float,
        namespace: str,
        dimensions: Mapping[str, str],
        stream: TextIO | None = None,
        refusals: Callable[[], float] = refusals_total,
        cpu: CpuMeter | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._monitor = monitor
        self._pending = pending
        self.interval_s = interval_s
        self.namespace = namespace
        self.dimensions = dict(dimensions)
        self._stream = stream
        self._refusals = refusals
        self._refused = refusals()
        self._cpu = cpu or CpuMeter()
        self._clock_ms = clock_ms
        self._background = tasks.TaskSet("scaling signal")
        self._stopping = False

    def line(self) -> str | None:
        """The next line (and the counters it consumed), or None while the backlog reads
        fail."""
        refused_now = self._refusals()
        refused, self._refused = refused_now - self._refused, refused_now
        cpu = self._cpu.read()
        if not self._monitor.healthy:
            return None
        values = sample(self._monitor, refused, self._pending(), cpu)
        doc = document(values, self.namespace, self.dimensions, self._clock_ms())
        return json.dumps(doc, separators=(",", ":"), allow_nan=False)

    def emit(self) -> bool:
        text = self.line()
        if text is None:
            return False
        stream = self._stream or sys.stdout
        stream.write(text + "\n")  # one write: lines of one process never interleave
        stream.flush()
        return True

    async def start(self) -> None:
        self._background.spawn(self._run(), name="scaling-signal")

    async def stop(self) -> None:
        self._stopping = True
        await self._background.stop()

    async def _run(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.interval_s)
            try:
                self.emit()
            except Exception as exc:  # never let a metric line take the pod down
                log.warning("scaling signal not written", error=repr(exc))
