"""Proxy-path benchmark: ``make bench`` (or ``python -m bench.proxy``).

Starts its own stack (SQS emulator, demo backend with 20 ms latency, api, worker) on
free ports and sends the same requests, at the same concurrency, once straight to the
demo backend and once through queuefront; repeats, and prints medians side by side
with SQS calls per request and Redis commands per reply. Each send linger is
measured on a freshly started api and worker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from bench.loadgen import LoadResult, run_load
from devstack import Stack, metric, new_stack_env, start_backend, start_emulator
from queuefront.queues import delete_queues, ensure_queues

REDIS_URL = os.environ.get("QF_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Row:
    label: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    sqs_per_req: float | None = None
    redis_per_reply: float | None = None


async def redis_commands(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


async def sqs_calls(urls: list[str]) -> float:
    return sum([await metric(u, "queuefront_sqs_calls_total") for u in urls])


async def one_round(
    stack: Stack,
    backend_url: str,
    worker_metrics: str,
    redis: Redis,
    n: int,
    conc: int,
    round_no: int,
) -> tuple[LoadResult, LoadResult, float, float]:
    paths = [f"/items/{round_no}-{i}" for i in range(n)]
    direct = await run_load(backend_url, paths, concurrency=conc)
    metrics_urls = [stack.api_metrics_url, worker_metrics]
    sqs_before, redis_before = await sqs_calls(metrics_urls), await redis_commands(redis)
    proxied = await run_load(stack.api_url, ["/api" + p for p in paths], concurrency=conc)
    sqs_after, redis_after = await sqs_calls(metrics_urls), await redis_commands(redis)
    # INFO itself and the metric scrapes are not requests' work: subtract the 1 INFO call
    return (
        direct,
        proxied,
        (sqs_after - sqs_before) / proxied.requests,
        (redis_after - redis_before - 1) / proxied.requests,
    )


async def main_async(args: argparse.Namespace) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="qf-bench-"))
    sqs_url, sqs = await start_emulator(log_dir)
    backend_url, backend = await start_backend(
        log_dir,
        QF_DEMO_LATENCY_MS="20",
        QF_DEMO_CONCURRENCY=str(args.backend_concurrency),
        QF_LOG_LEVEL="WARNING",
    )
    procs = [sqs, backend]
    base = {
        "QF_SQS_ENDPOINT_URL": sqs_url,
        "QF_REDIS_URL": REDIS_URL,
        "QF_BACKEND_URL": backend_url,
        "QF_LOG_LEVEL": "WARNING",
        "QF_ADMISSION_THRESHOLD": "100000",
    }
    redis = Redis.from_url(REDIS_URL)
    rows: list[Row] = []
    try:
        for linger in args.linger_ms:
            stack = Stack(env={**new_stack_env(base), "QF_LOG_LEVEL": "WARNING"}, log_dir=log_dir)
            settings = stack.settings()
            await ensure_queues(settings, wait_s=10)
            try:
                await stack.start_api(QF_SEND_LINGER_MS=str(linger))
                worker = await stack.start_worker(
                    QF_SEND_LINGER_MS=str(linger),
                    QF_WORKER_CONCURRENCY=str(args.worker_concurrency),
                )
                worker_metrics = worker.metrics_url
                await run_load(stack.api_url, ["/api/items/warm"] * 200, concurrency=16)
                rounds = [
                    await one_round(
                        stack,
                        backend_url,
                        worker_metrics,
                        redis,
                        args.requests,
                        args.concurrency,
                        r,
                    )
                    for r in range(args.repeat)
                ]
            finally:
                stack.stop_all()
                await delete_queues(settings)
            med = statistics.median
            if not rows:
                rows.append(
                    Row(
                        "direct to backend",
                        med(d.rps for d, *_ in rounds),
                        med(d.p50_ms for d, *_ in rounds),
                        med(d.p99_ms for d, *_ in rounds),
                        sum(d.errors for d, *_ in rounds),
                    )
                )
            rows.append(
                Row(
                    f"queuefront, linger {linger:g} ms",
                    med(p.rps for _, p, *_ in rounds),
                    med(p.p50_ms for _, p, *_ in rounds),
                    med(p.p99_ms for _, p, *_ in rounds),
                    sum(p.errors for _, p, *_ in rounds),
                    med(s for *_, s, _ in rounds),
                    med(r for *_, r in rounds),
                )
            )
    finally:
        await redis.aclose()
        for proc in procs:
            proc.stop()
    print_table(rows, args)


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    load = os.getloadavg()
    print(
        f"\nproxy path, demo backend 20 ms, {args.requests} requests x {args.repeat} rounds "
        f"(medians), concurrency {args.concurrency}, worker slots {args.worker_concurrency}, "
        f"{os.cpu_count()} cores, load average before/after: {load[0]:.2f}"
    )
    head = (
        "| path | req/s | p50 ms | p99 ms | p50 overhead ms | ratio req/s | errors "
        "| SQS calls/req | Redis cmds/reply |"
    )
    print(head)
    print("|" + "---|" * 9)
    base = rows[0]
    for r in rows:
        sqs = f"{r.sqs_per_req:.2f}" if r.sqs_per_req is not None else "-"
        red = f"{r.redis_per_reply:.2f}" if r.redis_per_reply is not None else "-"
        print(
            f"| {r.label} | {r.rps:.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
            f"{r.p50_ms - base.p50_ms:.1f} | {r.rps / base.rps:.2f} | {r.errors} | {sqs} | {red} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker-concurrency", type=int, default=64)
    parser.add_argument("--backend-concurrency", type=int, default=64)
    parser.add_argument("--linger-ms", type=float, nargs="+", default=[0.0, 2.0, 5.0])
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
