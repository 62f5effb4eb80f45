"""``python -m bench.scaling.capacity [--rates 1000 10000 50000] [--json]``: what a steady
load of a given mix takes — tasks per service, SQS calls, Redis commands, Postgres commits,
dollars a month by service — and which limit comes next.

Everything is computed, nothing typed in: the per-request CPU and SQS calls come from the
measured figures (bench/figures/throughput.json, the file ``python -m bench.throughput``
writes; replace it and re-run), the task sizes, targets and limits from deploy/terraform
as the simulator reads it, the prices from bench/scaling/aws.py. Steady state means each
service at its scaling target (the api at ``api_cpu_target_percent``, the workers at
``worker_target_utilization_percent`` of their slots), which is where the policy holds it.

The mix (``Mix``, the hyper-scale seed's, stated in bench/scaling/scenarios/
hyperscale-swing.toml): 60 % edge-cached GETs that CloudFront answers (100 URLs, s-maxage
3 s), 28 % cached GETs answered by the api (2 % miss and go to the backend), 2 % queued
requests to the backend (10 % of them high priority), 10 % writes (votes). The backend
takes 0.2 s a call. Redis commands per request are counted from the code paths (``REDIS``),
not measured: bench.throughput does not count them yet.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from typing import Any

from bench.scaling.aws import DEFAULT as AWS
from bench.scaling.aws import tiered
from bench.scaling.figures import FIGURES_PATH, ThroughputFigures
from bench.scaling.report import DIRECT_WRITER_CALLS_PER_ITEM
from bench.scaling.terraform import Policy, load_policy
from bench.scaling.workers import receivers_per_queue

WAF_ACL_RPS = 100_000
"""Requests a second one web ACL takes (AWS WAF developer guide, "AWS WAF quotas": maximum
requests per second per web ACL, 100,000, adjustable)."""
HOURS_PER_MONTH = 730.0
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
RATES = (1_000, 10_000, 50_000)


@dataclass(frozen=True)
class Mix:
    edge: float = 0.60
    cached: float = 0.28
    queued: float = 0.02
    ingest: float = 0.10
    cached_miss_ratio: float = 0.02
    high_share: float = 0.10
    edge_objects: int = 100
    edge_ttl_s: float = 3.0
    backend_service_s: float = 0.2


REDIS = {
    # commands one request costs Redis, counted from the code (not measured):
    "rate_limit": 4,  # service/ratelimit.py: EVALSHA of the GCRA (TIME, GET, SET inside)
    # workers/priority/handback.py: SET claim NX + GET reply (one pipeline), SET reply + PUBLISH
    "queued": 4,
    "cached_miss": 2,  # queuefront/cache.py: the fill's lease (SET NX) and the cached value (SET)
    "cached_hit_local_miss": 2,  # queuefront/cache.py: GET generation + GET value (pipelined)
    "vote": 1,  # queuefront/tally.py: one HINCRBY per stored vote inside the batch's script
    "vote_batch": 2,  # the batch's EVALSHA and its SET NX marker
    # workers/priority/leases.py, with a shared backend limit: at most one grant script and
    # one release script per call (both batch what comes together; a PUBLISH only while a
    # worker is blocked), plus each worker's renewal every LEASE_TTL_S / 3
    "backend_lease": 2,
}
LOCAL_HIT_SHARE = 0.9
"""Share of cache hits the pod's in-process tier answers (service/hotcache.py) — assumed,
it depends on how many distinct keys are hot."""
REDIS_PRIMARY_OPS = 100_000
"""Simple commands a second one Redis primary (one thread) serves: an order of magnitude,
not measured on ElastiCache here (redis-benchmark on one core gives 100-200k for GET/SET)."""
SUBSCRIBER_REPLIES_PER_S = 13_000
"""Pushed replies one subscriber connection absorbs (measured, docs/design: 13k/s, 28k with
hiredis): each api process is one subscriber."""
REDIS_NODE_HOUR = 0.219
"""cache.r7g.large on demand, us-east-1 (Amazon ElastiCache pricing; list price assumed,
check the page for your Region)."""
DB_INSTANCE_HOUR = 0.225
"""db.r6g.large PostgreSQL Single-AZ on demand, us-east-1 (Amazon RDS pricing; list price
assumed); Multi-AZ doubles it."""


@dataclass(frozen=True)
class Level:
    rate: int
    flows: dict[str, float]
    api_gateway_rps: float
    tasks: dict[str, int]
    limits: dict[str, int]
    sqs_calls_per_s: float
    redis_commands_per_s: float
    postgres_commits_per_s: float
    usd_per_month: dict[str, float]
    next_limits: list[str]


def _tasks_for(load: float, per_task: float, lo: int) -> int:
    return max(lo, math.ceil(load / per_task - 1e-9)) if per_task > 0 else lo


def level(rate: int, mix: Mix, policy: Policy, figures: ThroughputFigures) -> Level:
    api, worker, writer = (policy.services[s] for s in ("api", "worker", "writer"))
    vals = policy.values
    # --- the flows ------------------------------------------------------------------------
    cached = mix.cached * rate
    misses = cached * mix.cached_miss_ratio
    hits = cached - misses
    queued = mix.queued * rate
    ingest = mix.ingest * rate
    edge = mix.edge * rate
    refreshes = mix.edge_objects / mix.edge_ttl_s
    backend = queued + misses + refreshes
    gateway = cached + queued + ingest + refreshes
    spec = policy.edge
    # ingest_direct: API Gateway sends the votes to SQS itself, one message each
    direct = ingest if spec is not None and spec.direct_routes else 0.0
    flows = {
        "edge (CloudFront)": edge,
        "cached hits": hits,
        "backend calls": backend,
        "votes": ingest,
    }
    # --- tasks at their targets -------------------------------------------------------------
    factor = 1.0  # ModelConstants.vcpu_factor: a Fargate vCPU as one measured core
    api_cpu = (
        hits * figures.cpu_s("cached", "api")
        + (queued + misses + refreshes) * figures.cpu_s("proxied", "api")
        + (ingest - direct) * figures.cpu_s("votes", "api")
    ) / factor
    api_vcpu = api.cpu_units / 1024
    api_target = float(vals["api_cpu_target_percent"]) / 100
    concurrency = int(worker.settings["worker_concurrency"])
    # calls in flight: past the workers' shared limit (QF_BACKEND_MAX_CONCURRENCY) they wait
    # in the queue, and more tasks would only wait for leases
    shared = int(worker.settings.get("backend_max_concurrency", 0)) or math.inf
    in_flight = min(backend * mix.backend_service_s, shared)
    worker_target = float(vals.get("worker_target_utilization_percent", 70)) / 100
    writer_vcpu = min(1.0, writer.cpu_units / 1024)
    writer_cpu = ingest * figures.cpu_s("votes", "writer")
    tasks = {
        "api": _tasks_for(api_cpu, api_vcpu * api_target, api.min_tasks),
        "worker": max(
            _tasks_for(in_flight, concurrency * worker_target, worker.min_tasks),
            _tasks_for(backend * figures.cpu_s("proxied", "worker"), 0.7, worker.min_tasks),
        ),
        "writer": _tasks_for(writer_cpu, writer_vcpu * 0.7, writer.min_tasks),
    }
    limits = {"api": api.max_tasks, "worker": worker.max_tasks, "writer": writer.max_tasks}
    # --- SQS, Redis, Postgres --------------------------------------------------------------------
    processes = tasks["api"] * max(1, int(api.settings.get("api_processes") or api_vcpu))
    poll_s = float(api.settings["backlog_poll_s"])
    worker_wait = float(worker.settings["receive_wait_s"])
    standing = (
        2 * processes / poll_s
        + 2 * receivers_per_queue(concurrency) * tasks["worker"] / worker_wait
        + tasks["writer"] / float(writer.settings["receive_wait_s"])
    )
    sqs = (
        backend * figures.sqs_calls("proxied")
        + (ingest - direct) * figures.sqs_calls("votes")
        + direct * (1 + DIRECT_WRITER_CALLS_PER_ITEM)
        + standing
    )
    rate_limited = float(api.settings.get("rate_limit_rps", 0)) > 0
    batch = int(writer.settings["batch_size"])
    # a batch commits full, or when its wait is over with what it has
    every_wait = tasks["writer"] / float(writer.settings["batch_max_wait_s"])
    batches = max(ingest / batch, min(ingest, every_wait))
    redis = (
        (gateway * REDIS["rate_limit"] if rate_limited else 0.0)
        + backend * REDIS["queued"]
        + misses * REDIS["cached_miss"]
        + hits * (1 - LOCAL_HIT_SHARE) * REDIS["cached_hit_local_miss"]
        + ingest * REDIS["vote"]
        + batches * REDIS["vote_batch"]
        + (backend * REDIS["backend_lease"] if shared < math.inf else 0.0)
        + processes / poll_s  # each pod reads the workers' reports once a poll
        + tasks["worker"]  # each worker writes its report once a second
    )
    commits = batches

    # --- dollars a month -----------------------------------------------------------------------
    def fargate(spec_name: str, n: int) -> float:
        spec = policy.services[spec_name]
        hour = (spec.cpu_units / 1024) * AWS.fargate_vcpu_hour + (
            spec.memory_mib / 1024
        ) * AWS.fargate_gb_hour
        spot = max(0, n - spec.on_demand_base) * spec.spot_share
        return hour * HOURS_PER_MONTH * (n - spot + spot * (1 - AWS.fargate_spot_discount))

    redis_nodes = 1 + int(vals.get("redis_replicas", 1))
    db_instances = 2 if vals.get("db_multi_az", True) else 1
    rest = spec is None or spec.api_kind == "rest"
    tiers = AWS.api_gateway_rest_tiers if rest else AWS.api_gateway_http_tiers
    acls = spec.web_acls if spec is not None else ()
    inspected = {"cloudfront": float(rate), "api_gateway": gateway, "alb": gateway}
    waf = sum(
        inspected.get(a.attached_to, 0.0) * SECONDS_PER_MONTH * AWS.waf_per_million / 1e6
        + AWS.waf_acl_month
        + a.rules * AWS.waf_rule_month
        for a in acls
    )
    nlbs = spec.network_load_balancers if spec is not None else 0
    nlb_gb_per_hour = (gateway - direct) * 3600 * AWS.nlb_bytes_per_request / 1e9
    usd = {
        "fargate_api": fargate("api", tasks["api"]),
        "fargate_worker": fargate("worker", tasks["worker"]),
        "fargate_writer": fargate("writer", tasks["writer"]),
        "sqs": sqs * SECONDS_PER_MONTH * AWS.sqs_per_million / 1e6,
        "api_gateway": tiered(gateway * SECONDS_PER_MONTH, tiers),
        "cloudfront": rate * SECONDS_PER_MONTH * AWS.cloudfront_https_per_10k / 1e4,
        "waf": waf,
        "nlb": nlbs * HOURS_PER_MONTH * AWS.nlb_hour
        + (nlb_gb_per_hour * HOURS_PER_MONTH * AWS.nlcu_hour if nlbs else 0.0),
        "elasticache": redis_nodes * REDIS_NODE_HOUR * HOURS_PER_MONTH,
        "rds": db_instances * DB_INSTANCE_HOUR * HOURS_PER_MONTH,
    }
    usd = {k: round(v) for k, v in usd.items()}
    usd["total"] = sum(usd.values())
    # --- what comes next ----------------------------------------------------------------------
    nxt = []
    if gateway > AWS.api_gateway_account_rate:
        nxt.append(
            f"API Gateway: {gateway:,.0f} requests/s over the account's default quota "
            f"({AWS.api_gateway_account_rate:,.0f}/s): raise it (Service Quotas L-8A5B8E43)"
        )
    default_route = cached + queued * (1 - mix.high_share) + refreshes
    if default_route > policy.default_throttle.rate:
        nxt.append(
            f"API Gateway's $default throttle ({policy.default_throttle.rate:,.0f}/s) below "
            f"{default_route:,.0f}/s"
        )
    for a in acls:
        seen = inspected.get(a.attached_to, 0.0)
        if seen > 0.5 * WAF_ACL_RPS:
            nxt.append(
                f"WAF: {seen:,.0f} requests/s on the {a.scope.lower()} web ACL {a.name!r} "
                f"(quota {WAF_ACL_RPS:,}/s per web ACL)"
            )
    for svc, n in tasks.items():
        if n > limits[svc]:
            nxt.append(f"{svc}: {n} tasks needed, {svc}_max_tasks = {limits[svc]}")
    slots = backend * mix.backend_service_s
    if slots > policy.backend_max_concurrency:
        nxt.append(
            f"the backend: {slots:,.0f} calls in flight, backend_max_concurrency = "
            f"{policy.backend_max_concurrency}"
        )
    if redis > 0.5 * REDIS_PRIMARY_OPS:
        nxt.append(f"Redis: {redis:,.0f} commands/s on one primary (~{REDIS_PRIMARY_OPS:,}/s)")
    per_pod = backend / max(1, processes)
    if per_pod > 0.5 * SUBSCRIBER_REPLIES_PER_S:
        nxt.append(f"pub/sub: {per_pod:,.0f} replies/s per pod")
    return Level(
        rate=rate,
        flows={k: round(v, 1) for k, v in flows.items()},
        api_gateway_rps=round(gateway, 1),
        tasks=tasks,
        limits=limits,
        sqs_calls_per_s=round(sqs, 1),
        redis_commands_per_s=round(redis),
        postgres_commits_per_s=round(commits, 1),
        usd_per_month=usd,
        next_limits=nxt,
    )


def table(levels: list[Level]) -> str:
    cols = [f"{lv.rate:,} requests/s" for lv in levels]
    rows: list[tuple[str, list[str]]] = [
        ("through API Gateway (requests/s)", [f"{lv.api_gateway_rps:,.0f}" for lv in levels]),
        ("backend calls/s", [f"{lv.flows['backend calls']:,.0f}" for lv in levels]),
        (
            "api / worker / writer tasks",
            [f"{lv.tasks['api']} / {lv.tasks['worker']} / {lv.tasks['writer']}" for lv in levels],
        ),
        ("SQS calls/s", [f"{lv.sqs_calls_per_s:,.0f}" for lv in levels]),
        ("Redis commands/s", [f"{lv.redis_commands_per_s:,}" for lv in levels]),
        ("Postgres commits/s", [f"{lv.postgres_commits_per_s:,.1f}" for lv in levels]),
    ]
    for key in levels[0].usd_per_month:
        rows.append((f"$/month {key}", [f"{lv.usd_per_month[key]:,}" for lv in levels]))
    out = ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    out += [f"| {name} | " + " | ".join(v) + " |" for name, v in rows]
    out.append("")
    for lv in levels:
        out.append(f"- {lv.rate:,}/s: " + ("; ".join(lv.next_limits) or "no limit reached"))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling.capacity", description=__doc__)
    parser.add_argument("--rates", type=int, nargs="+", default=list(RATES))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    policy = load_policy()
    figures = ThroughputFigures.load(FIGURES_PATH)
    levels = [level(r, Mix(), policy, figures) for r in args.rates]
    if args.json:
        doc: dict[str, Any] = {"mix": asdict(Mix()), "levels": [asdict(lv) for lv in levels]}
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(table(levels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
