"""The simulator's own constants and the unit of work it moves around.

Requests travel as *cohorts*: all the requests of one class that reached a point in the
same time step, with a count. Counts are integers and every transition moves whole
requests from one counter to another, so conservation (offered = answered + shed +
timed out + still in the system + lost) is a check of the bookkeeping, not an identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from queuefront.settings import Settings

Priority = Literal["high", "normal"]


@dataclass(frozen=True)
class ModelConstants:
    """What the simulator assumes beyond Terraform, AWS and the measured figures. A
    scenario's ``[model]`` table overrides any of them for one run."""

    autoscaling: bool = True
    """False: every service keeps its initial task count (a machine of fixed size, as in
    the calibration against ``make sla``)."""

    api_gateway: bool = True
    """False: clients reach the api directly — no API Gateway throttles, no 30 s cut."""

    cloudfront: bool = True
    """False: edge requests are not cached at the edge; they reach the api as queued ones."""

    vcpu_factor: float = 1.0
    """Work a Fargate vCPU does per second, relative to one core of the machine that
    measured the per-request CPU (bench/figures/throughput.json). Not measured: Fargate
    vCPUs are hyperthreads of recent Xeon/EPYC hosts; assumed equal, plausible range
    0.6-1.3. Read the figures' speed probe against it."""

    api_tasks: int | None = None
    worker_tasks: int | None = None
    writer_tasks: int | None = None
    """Initial task counts instead of Terraform's (services.desired_count within min/max)."""

    api_processes: int | None = None
    """Api processes per task instead of what Terraform sets (QF_API_PROCESSES)."""

    refusal_cpu_s: float | None = None
    """Api CPU of a fast 503. Not measured: assumed equal to a cache hit's (a handler that
    answers without a dependency call)."""

    service_spread: float = 0.25
    """Backend calls take the scenario's service time ± this share, spread evenly (five
    groups, the middles of five equal slices from -25 % to +25 %: 0.8 to 1.2 times the
    service time by default, which calls take in turn): real calls vary, and identical
    ones would keep every slot of a burst in lockstep, completing together once per
    service time. Not measured; 0 for a fixed-latency backend such as the demo's."""

    somaxconn: int = 4096
    """The kernel's cap on a listening socket's backlog (net.core.somaxconn, 4096 since
    Linux 5.4): with QF_LISTEN_BACKLOG, how many connections wait for a busy api process
    before new ones are refused."""

    worker_refuses_late: bool | None = None
    """Whether a worker answers 503 at once, without calling the backend, a message whose
    remaining window is shorter than the backend's current service time as the worker sees
    it (the mean of its last completions, never less than the age of its oldest call in
    flight: workers/priority/pace.py). None: what the product does, the worker's
    ``QF_WORKER_REFUSE_LATE`` as Terraform leaves it (on); false: what it did before (it
    called, and the client got a 504 at its deadline)."""

    admission_margin_s: float | None = None
    """A what-if of admission's margin: keep this many seconds of every window free,
    whatever the window. None: what the product does (service/admission.py's
    ``usable_s``: ``ADMISSION_MARGIN_S``, 1 s, or ``ADMISSION_MARGIN_SHARE`` of a window
    shorter than 5 s). Shows how sensitive a scenario is to the margin (the brownout: the
    same goodput from 0.5 to 3 s)."""

    figures: str = ""
    """Path of the measured figures (default bench/figures/throughput.json)."""

    settings: dict[str, Any] = field(default_factory=dict)
    """QF settings for every process on top of what Terraform sets (``admission_predictive
    = false``, ``max_pending_replies = 100``): what-ifs of settings Terraform leaves at
    their defaults."""

    def with_overrides(self, values: dict[str, Any]) -> ModelConstants:
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"[model] has unknown constants: {', '.join(sorted(unknown))}")
        not_settings = set(values.get("settings", {})) - set(Settings.model_fields)
        if not_settings:
            raise ValueError(f"[model] settings: no such QF settings {sorted(not_settings)}")
        return replace(self, **values)


class Cohort:
    """Requests of one client class that were admitted into the queue together."""

    __slots__ = ("arrived", "cls", "count", "deadline", "expired", "open", "priority")

    def __init__(
        self, cls: str, priority: Priority, count: int, arrived: float, deadline: float
    ) -> None:
        self.cls = cls
        """Client class for the accounting: queued, cached (a miss) or edge (a refresh)."""
        self.priority = priority
        self.count = count
        self.arrived = arrived
        """When the clients sent them (at API Gateway)."""
        self.deadline = deadline
        """When the clients get a 504 if no reply came (the route's window)."""
        self.open = count
        """Requests still waiting for their answer."""
        self.expired = False
        """Past the deadline: what is left of it is a 504, and a worker that receives
        one of its messages deletes it without calling the backend."""


class Batch:
    """``n`` requests of one cohort waiting somewhere since ``at`` (in a queue: receivable
    from ``at``; at a worker: taken at ``at``)."""

    __slots__ = ("at", "cohort", "n")

    def __init__(self, cohort: Cohort, n: int, at: float) -> None:
        self.cohort = cohort
        self.n = n
        self.at = at
