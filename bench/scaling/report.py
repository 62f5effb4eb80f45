"""A finished run as the JSON object of the CLI contract, and as a table.

Conservation, per client class: offered = answered + shed + timed_out + in the system at
the end + lost. For queued requests the contract names them: offered = answered + shed +
timed_out + queued_at_end + lost.
"""

from __future__ import annotations

import math
from typing import Any

from bench.scaling import criteria
from bench.scaling.aws import tiered
from bench.scaling.scenario import CLASSES
from bench.scaling.sim import Simulation
from bench.scaling.workers import receivers_per_queue
from queuefront.limits import MAX_RECEIVE_MESSAGES

HOUR_S = 3600.0
HOURS_PER_MONTH = 730.0


def _round(x: float | None, digits: int = 3) -> float | None:
    return None if x is None or math.isnan(x) else round(x, digits)


DIRECT_WRITER_CALLS_PER_ITEM = 2 / MAX_RECEIVE_MESSAGES
"""SQS calls a writer makes per vote that API Gateway sent alone (ingest_direct): one
ReceiveMessage per ten messages and one DeleteMessageBatch per ten (queuefront/limits.py,
SQS's batch limits); the packed votes' calls are in the measured figures."""


def aws_requests(sim: Simulation) -> dict[str, int]:
    """What AWS bills per request: SQS calls (the measured calls per queued request and per
    vote, plus the standing polls; a direct vote's SendMessage and the writer's share of a
    receive and a delete), requests that passed API Gateway's throttles, every viewer
    request at CloudFront, what each WAF web ACL inspects (CloudFront's: every viewer
    request; the API stage's: every request that reaches API Gateway, before its
    throttles), the requests the VPC link's NLB carries."""
    policy = sim.policy
    api_poll = float(sim.api_settings["backlog_poll_s"])
    worker_wait = float(policy.services["worker"].settings["receive_wait_s"])
    writer_wait = float(policy.services["writer"].settings["receive_wait_s"])
    standing = (
        # every api process reads both queues' attributes once per poll
        2 * sim.api_processes * sim.services["api"].task_seconds / api_poll
        # idle receive loops long-poll once per QF_RECEIVE_WAIT_S (an upper bound: busy
        # loops' calls are in the per-request figures)
        + 2
        * receivers_per_queue(sim.pool.concurrency)
        * sim.services["worker"].task_seconds
        / worker_wait
        + sim.services["writer"].task_seconds / writer_wait
    )
    sqs = (
        sim.queued_messages * sim.sqs_calls_per["queued"]
        + sim.ingest_items * sim.sqs_calls_per["ingest"]
        + sim.direct_items * (1 + DIRECT_WRITER_CALLS_PER_ITEM)
        + standing
    )
    viewers = sum(sim.ledger.offered[c] for c in CLASSES) if sim.model.cloudfront else 0
    gateway = sim.gateway_passed if sim.model.api_gateway else 0
    edge = sim.policy.edge
    inspected = {"cloudfront": viewers, "api_gateway": sim.gateway_offered, "alb": gateway}
    waf = (
        sum(inspected.get(acl.attached_to, 0) for acl in edge.web_acls)
        if edge and sim.model.api_gateway
        else 0
    )
    return {
        "sqs_calls": round(sqs),
        "api_gateway": gateway,
        "cloudfront": viewers,
        "waf_inspected": waf,
        "nlb": gateway - sim.direct_items if edge and edge.network_load_balancers else 0,
        "backend_calls": sim.pool.completed,
    }


def cost_usd(sim: Simulation, requests: dict[str, int]) -> dict[str, float]:
    """Fargate by task-seconds and size (on demand / Spot share), the rest per request."""
    aws = sim.aws
    fargate = 0.0
    for svc in sim.services.values():
        spec = svc.spec
        per_hour = (spec.cpu_units / 1024) * aws.fargate_vcpu_hour + (
            spec.memory_mib / 1024
        ) * aws.fargate_gb_hour
        on_demand = svc.task_seconds - svc.spot_task_seconds
        fargate += per_hour * (on_demand + svc.spot_task_seconds * (1 - aws.fargate_spot_discount))
    edge = sim.policy.edge
    hours = sim.scenario.duration_s / HOUR_S
    rest = edge is None or edge.api_kind == "rest"
    tiers = aws.api_gateway_rest_tiers if rest else aws.api_gateway_http_tiers
    waf = requests["waf_inspected"] * aws.waf_per_million / 1e6
    nlb = 0.0
    if edge is not None and sim.model.api_gateway:
        # monthly fees prorated by the hour (AWS WAF pricing)
        waf += sum(
            (aws.waf_acl_month + acl.rules * aws.waf_rule_month) * hours / HOURS_PER_MONTH
            for acl in edge.web_acls
        )
        gb = requests["nlb"] * aws.nlb_bytes_per_request / 1e9
        nlb = edge.network_load_balancers * hours * aws.nlb_hour + gb * aws.nlcu_hour
    out = {
        "fargate": fargate / HOUR_S,
        "sqs": requests["sqs_calls"] * aws.sqs_per_million / 1e6,
        # a run is priced as if it were the month's only traffic: the first tier's rate
        "api_gateway": tiered(requests["api_gateway"], tiers),
        "cloudfront": requests["cloudfront"] * aws.cloudfront_https_per_10k / 1e4,
        "waf": waf,
        "nlb": nlb,
    }
    out["total"] = sum(out.values())
    return {k: round(v, 4) for k, v in out.items()}


def per_minute(sim: Simulation) -> list[dict[str, Any]]:
    """Each minute's requests and tasks, for checks on the shape of a run."""
    s, dt = sim.series, sim.dt
    per = max(1, round(60.0 / dt))
    out = []
    for i in range(0, len(s.t), per):
        j = i + per
        out.append(
            {
                "minute": i // per,
                "offered": {c: sum(s.offered[c][i:j]) for c in CLASSES},
                "answered": {c: sum(s.answered[c][i:j]) for c in CLASSES},
                "shed": {c: sum(s.shed[c][i:j]) for c in CLASSES},
                "backend_capacity": round(sum(s.backend_capacity_rps[i:j]) * dt, 1),
                "backend_offered": sum(s.backend_offered[i:j]),
                "backend_answered": sum(s.backend_answered[i:j]),
                "tasks": {k: max(v[i:j]) for k, v in s.running.items()},
            }
        )
    return out


def result(sim: Simulation, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    led, pool, ingest = sim.ledger, sim.pool, sim.ingest
    in_system = sim.in_system()
    requests = aws_requests(sim)
    offered = {c: led.offered[c] for c in CLASSES}
    first_up = sim.scenario.first_step_up_s()
    first_serving = [
        s.first_scaled_serving_at
        for s in sim.services.values()
        if s.first_scaled_serving_at is not None
    ]
    first_scale_out = first_decision = None
    if first_up is not None:
        later = [t for t in first_serving if t >= first_up]
        first_scale_out = _round(min(later) - first_up, 1) if later else None
        raised = [
            t
            for target in sim.targets.values()
            for t, policy, a, b in target.activities
            if t >= first_up and b > a and not policy.startswith("scheduled:")
        ]
        first_decision = _round(min(raised) - first_up, 1) if raised else None
    out: dict[str, Any] = {
        "scenario": sim.scenario.name,
        "duration_s": sim.scenario.duration_s,
        "overrides": overrides or {},
        "offered": offered,
        "answered": {c: led.answered[c] for c in CLASSES},
        "shed": {c: led.shed[c] for c in CLASSES},
        "timed_out": led.timed_out["queued"],
        "timed_out_by_class": {c: led.timed_out[c] for c in CLASSES},
        "lost": sum(led.lost[c] for c in CLASSES) + ingest.lost,
        "lost_by_class": {c: led.lost[c] + (ingest.lost if c == "ingest" else 0) for c in CLASSES},
        "queued_at_end": in_system.get("queued", 0),
        "in_system_at_end": {c: in_system.get(c, 0) for c in CLASSES},
        "ingest_stored": ingest.stored,
        "ingest_backlog_at_end": ingest.items,
        "latency_p50_s": _round(sim.latency_percentile(0.50)),
        "latency_p99_s": _round(sim.latency_percentile(0.99)),
        "max_backlog": {
            "high": pool.queues["high"].max_length,
            "normal": pool.queues["normal"].max_length,
            "ingest": ingest.max_messages,
        },
        "max_oldest_age_s": {
            "high": _round(pool.queues["high"].max_oldest_age_s, 1),
            "normal": _round(pool.queues["normal"].max_oldest_age_s, 1),
            "ingest": _round(ingest.max_oldest_age_s, 1),
        },
        "peak_tasks": {n: s.peak_tasks for n, s in sim.services.items()},
        "task_hours": {n: _round(s.task_seconds / HOUR_S) for n, s in sim.services.items()},
        "first_scale_out_s": first_scale_out,
        "first_scale_decision_s": first_decision,
        "cost_usd": cost_usd(sim, requests),
        "aws_requests": requests,
        "shed_reasons": {c: dict(led.shed_reasons[c]) for c in CLASSES if led.shed_reasons[c]},
        "queued_by_priority": {p: dict(v) for p, v in sim.by_priority.items()},
        "edge_refreshes": {
            "offered": led.offered["edge_origin"],
            "answered": led.answered["edge_origin"],
            "failed": led.shed["edge_origin"] + led.timed_out["edge_origin"],
        },
        "backend": {
            "calls": pool.completed,
            "late_calls": pool.late_calls,
            "expired_deleted": pool.expired_deleted,
        },
        "edge": {
            "api": sim.policy.edge.api_kind if sim.policy.edge else None,
            "integration_timeout_s": sim.client_limit_s,
            "ingest_direct": sim.ingest_direct,
            "direct_votes": sim.direct_items,
        },
        "worker_deploy": {
            "maximum_percent": sim.policy.services["worker"].deployment_maximum_percent,
            "minimum_healthy_percent": (
                sim.policy.services["worker"].deployment_minimum_healthy_percent
            ),
            # what a deploy at full scale can put on the backend, against the scenario's
            "peak_backend_calls": sim.policy.worker_peak_backend_calls,
            "backend_slots": sim.scenario.backend.slots,
        },
        "scaling_activities": [
            {"t_s": round(t, 1), "service": name, "policy": policy, "from": a, "to": b}
            for name, target in sim.targets.items()
            for t, policy, a, b in target.activities
        ],
        "minutes": per_minute(sim),
    }
    out["criteria"] = criteria.as_json(criteria.evaluate(out, sim.scenario.changes_s()))
    return out


def table(r: dict[str, Any]) -> str:
    """The run as a few aligned lines (what the CLI prints without --json)."""
    lines = [
        f"scenario {r['scenario']} ({r['duration_s']:.0f} s)"
        + (f", overrides {r['overrides']}" if r["overrides"] else "")
    ]
    head = (
        f"{'class':<8} {'offered':>10} {'answered':>10} {'shed':>9} {'timed out':>9} {'at end':>7}"
    )
    lines += ["", head, "-" * len(head)]
    for c in CLASSES:
        lines.append(
            f"{c:<8} {r['offered'][c]:>10,} {r['answered'][c]:>10,} {r['shed'][c]:>9,} "
            f"{r['timed_out_by_class'][c]:>9,} {r['in_system_at_end'][c]:>7,}"
        )
    p50, p99 = r["latency_p50_s"], r["latency_p99_s"]
    lines += [
        "",
        f"lost {r['lost']}; queued latency p50 {p50 if p50 is not None else '-'} s, "
        f"p99 {p99 if p99 is not None else '-'} s; ingest stored {r['ingest_stored']:,}, "
        f"backlog at end {r['ingest_backlog_at_end']:,}",
        "max backlog "
        + ", ".join(f"{k} {v:,}" for k, v in r["max_backlog"].items())
        + "; max oldest age "
        + ", ".join(f"{k} {v} s" for k, v in r["max_oldest_age_s"].items()),
        "peak tasks "
        + ", ".join(f"{k} {v}" for k, v in r["peak_tasks"].items())
        + "; task-hours "
        + ", ".join(f"{k} {v}" for k, v in r["task_hours"].items()),
        f"first scale-out serving {r['first_scale_out_s']} s after the first step-up "
        f"(decided after {r['first_scale_decision_s']} s)",
        "cost USD " + ", ".join(f"{k} {v:.4f}" for k, v in r["cost_usd"].items()),
        f"API Gateway {r['edge']['api']} API, integration timeout "
        f"{r['edge']['integration_timeout_s']:g} s"
        + (
            f"; ingest_direct: {r['edge']['direct_votes']:,} votes sent to SQS by API Gateway"
            if r["edge"]["ingest_direct"]
            else ""
        ),
        "worker deploys: maximum {maximum_percent:g} %, minimum healthy "
        "{minimum_healthy_percent:g} %: at most {peak_backend_calls} backend calls at full "
        "scale (the backend's slots: {backend_slots})".format(**r["worker_deploy"]),
    ]
    if r["shed_reasons"]:
        lines.append(
            "shed by reason "
            + "; ".join(
                f"{c}: " + ", ".join(f"{k} {v:,}" for k, v in reasons.items())
                for c, reasons in r["shed_reasons"].items()
            )
        )
    crit = r["criteria"]
    lines.append(
        "criteria "
        + ("met" if crit["ok"] else "NOT met")
        + ": "
        + "; ".join(
            f"{name} {'ok' if c['ok'] else 'FAIL'} ({c['detail']})"
            for name, c in crit["checks"].items()
        )
    )
    acts = r["scaling_activities"]
    if acts:
        lines.append(
            f"scaling activities ({len(acts)}): "
            + ", ".join(
                f"{a['t_s']:.0f}s {a['service']} {a['from']}→{a['to']} ({a['policy']})"
                for a in acts[:12]
            )
            + (" …" if len(acts) > 12 else "")
        )
    return "\n".join(lines)
