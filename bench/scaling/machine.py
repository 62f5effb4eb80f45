"""The simulator configured as ``make sla`` runs this machine: one api process, one worker
with the SLA benchmark's slots, the benchmark's demo backend, no autoscaling, no AWS edge.

Every constant is read from where the benchmark and the stack take it — ``bench.sla``'s
defaults (levels, window, backend workers, service time, knee, worker concurrency, the
client's limit), ``devstack.new_stack_env`` (one api process), ``queuefront.settings``'s
defaults (admission, pending bound, listen backlog, polls), the demo route table's reply
window — never typed in here, so a change to the benchmark changes the calibration.
What this machine adds beyond them is in :class:`MachineConstants`, each with its source.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from bench import sla
from bench.scaling.aws import DEFAULT as AWS_DEFAULT
from bench.scaling.aws import AwsConstants
from bench.scaling.figures import ThroughputFigures
from bench.scaling.model import ModelConstants
from bench.scaling.scenario import CLASSES, Backend, LoadPoint, Scenario
from bench.scaling.sim import Simulation
from bench.scaling.terraform import Policy, ServiceSpec, load_policy
from bench.sla_stats import LevelSummary
from devstack import ROOT, new_stack_env
from queuefront.routes import load_routes
from queuefront.settings import Settings

PATH_CLASS = {"queued": "queued", "cached": "cached"}
"""The SLA benchmark's paths the simulator can run, and the class of their requests. The
old architecture (clients straight to the demo backend) it cannot: every simulated request
goes through an api and, if not cached, the queue; and the demo backend's error limit
(``QF_DEMO_ERROR_LIMIT``, a 503 at once past it) is not in its backend."""

ONE_CORE_UNITS = 1024
"""An api or worker process is one Python thread: one core of this machine at most (the
simulator's CPU units, 1024 per vCPU)."""


@dataclass(frozen=True)
class MachineConstants:
    """What the simulator needs about this machine that neither the benchmark nor the
    settings say."""

    sqs_delivery_s: float = 0.027
    """The api's send to the worker's receive on the local SQS emulator: the median at the
    SLA levels below capacity, measured by ``python -m bench.scaling.sqs_delivery
    --seconds 10`` (2026-12-07 08:34, load average 3.6-3.9 from other work): 27.2 ms at
    58/s, 26.5 ms at 333/s, 19.4 ms at 583/s; p99 52, 65 and 43 ms. The emulator answers a
    receive when it has as many messages as asked or its wait (a short poll's too: 40 ms)
    ends, so the delay is spread over a poll cycle, which one constant does not spread."""

    backend_call_s: float | None = None
    """One demo backend call as this machine serves it, seconds: its workers ÷ the
    capacity the SLA run measured at its knee (closed loop, one client per worker), read
    from the measured run. None: the configured service time (``--backend-service-ms``),
    which this machine does not reach (the HTTP round trip and the event loop's timers
    come on top)."""

    step_s: float = 0.01
    """The simulation step: the demo backend's calls take 30 ms, so a 1 s step would put
    every arrival of a second at its start and blur latencies by up to a second."""


def sla_args() -> argparse.Namespace:
    """The settings ``make sla`` runs with (its parser's defaults, derived ones included)."""
    return sla.parse_args([])


def stack_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The QF settings of the SLA benchmark's api and worker: the defaults, the stack's
    environment (``devstack.new_stack_env``) and the worker concurrency the benchmark sets
    (``bench.sla.start``)."""
    env = new_stack_env({"QF_WORKER_CONCURRENCY": str(args.worker_concurrency)})
    fields = {k[3:].lower(): v for k, v in env.items() if k.startswith("QF_")}
    # as devstack.Stack.settings() reads them: validated and typed by Settings itself
    return Settings(**fields).model_dump()  # type: ignore[arg-type]


def reply_window_s() -> float:
    """The queued route's reply window in the demo route table (what bench.sla reads)."""
    return load_routes(ROOT / "config" / "routes.toml").get("item").timeout_s


def _service(name: str, tasks: int, settings: Mapping[str, Any]) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        cpu_units=ONE_CORE_UNITS,
        memory_mib=0,
        min_tasks=tasks,
        max_tasks=tasks,
        initial_tasks=tasks,
        on_demand_base=tasks,
        spot_share=0.0,
        settings=dict(settings),
    )


@cache
def _deployed() -> Policy:
    return load_policy()


def machine_policy(args: argparse.Namespace) -> Policy:
    """The deployed policy's structure with this machine's services: one api process, one
    worker, no writer (the benchmark starts none), nothing that scales."""
    settings = stack_settings(args)
    return replace(
        _deployed(),
        services={
            "api": _service("api", 1, settings),
            "worker": _service("worker", 1, settings),
            "writer": _service("writer", 0, settings),
        },
        target_tracking=(),
        step_policies=(),
        scheduled=(),
        reply_window_s=reply_window_s(),
        edge=None,
    )


def machine_model(args: argparse.Namespace) -> ModelConstants:
    settings = stack_settings(args)
    return ModelConstants(
        autoscaling=False,
        api_gateway=False,  # the generator talks to the api's port
        cloudfront=False,
        vcpu_factor=1.0,  # the figures were measured on this machine
        api_tasks=1,
        worker_tasks=1,
        writer_tasks=0,
        api_processes=int(settings["api_processes"]),
        service_spread=0.0,  # the demo backend sleeps a fixed time
    )


def machine_aws(args: argparse.Namespace, machine: MachineConstants) -> AwsConstants:
    # no API Gateway: the client's own limit (API Gateway's 29 s + 1 s) is when it gives up
    return replace(
        AWS_DEFAULT,
        api_gateway_timeout_s=float(args.client_timeout_s),
        sqs_delivery_s=machine.sqs_delivery_s,
    )


def backend(args: argparse.Namespace, machine: MachineConstants) -> Backend:
    """The demo backend as the SLA benchmark starts it: its workers, service time and
    collapse knee."""
    service_s = machine.backend_call_s or args.backend_service_ms / 1000.0
    return Backend(
        slots=int(args.backend_workers),
        service_s=service_s,
        collapse=True,
        knee=int(args.backend_knee),
    )


def level_scenario(
    args: argparse.Namespace, machine: MachineConstants, path: str, level_per_min: int
) -> Scenario:
    """One level of the benchmark: N requests evenly over the window, then nothing while
    the last ones are answered or time out (the client's limit after the last send)."""
    window = float(args.window_s)
    n = max(1, round(level_per_min * window / 60))  # as bench.sla.Bench.run_level
    cls = PATH_CLASS[path]
    rate = {c: (n / window if c == cls else 0.0) for c in CLASSES}
    zero = dict.fromkeys(CLASSES, 0.0)
    return Scenario(
        name=f"sla-{path}-{level_per_min}",
        duration_s=window + float(args.client_timeout_s) + 1.0,
        step_s=machine.step_s,
        backend=backend(args, machine),
        load=(LoadPoint(0.0, rate), LoadPoint(window, rate), LoadPoint(window, zero)),
    )


def predict_level(
    args: argparse.Namespace,
    machine: MachineConstants,
    path: str,
    level_per_min: int,
    figures: ThroughputFigures,
) -> LevelSummary:
    """One level, simulated, as the SLA benchmark's own row (bench/sla_stats.py), so that
    goodput, shed share, p99 and PASS mean the same on both sides: a 2xx is an answer in
    the window, a 503 a refusal (admission, the pending bound, a full listen backlog), a
    504 a timeout, and what is still in the system at the end a client that gave up."""
    sc = level_scenario(args, machine, path, level_per_min)
    sim = Simulation(
        sc, machine_policy(args), figures, machine_aws(args, machine), machine_model(args)
    )
    sim.run()
    cls, led, series = PATH_CLASS[path], sim.ledger, sim.series
    answered_steps = [t for t, n in zip(series.t, series.answered[cls], strict=True) if n]
    any_steps = [
        t
        for t, a, s in zip(series.t, series.answered[cls], series.shed[cls], strict=True)
        if a or s
    ]
    last_ok = answered_steps[-1] + sc.step_s if answered_steps else math.nan
    last_any = any_steps[-1] + sc.step_s if any_steps else math.nan
    outcomes = {
        "200": led.answered[cls],
        "503": led.shed[cls],
        "504": led.timed_out[cls],
        "timeout": sim.in_system().get(cls, 0) + led.lost[cls],
    }
    p50, p99 = led.percentile(cls, 0.50), led.percentile(cls, 0.99)
    return LevelSummary(
        path=path,
        level_per_min=level_per_min,
        window_s=float(args.window_s),
        reply_window_s=sim.window_s,
        n=led.offered[cls],
        sent=led.offered[cls],
        ok=led.answered[cls],
        outcomes={k: v for k, v in outcomes.items() if v},
        p50_ms=math.nan if p50 is None else p50 * 1000,
        p99_ms=math.nan if p99 is None else p99 * 1000,
        last_answer_s=last_any,
        last_ok_s=last_ok,
        p99_503_ms=math.nan,
        send_lag_p99_ms=math.nan,
        dispatch_lag_p99_ms=math.nan,
        gen_cpu_us_per_request=math.nan,
        connections_opened=0,
    )
