"""The kiosk's SLA table: ``make sla`` (or ``python -m bench.sla``).

Reproduces the seed's load-test method — N requests spread evenly over a 60 s window,
one level after another — against three paths, on this machine:

- ``old``: the old architecture, the load straight to a demo backend that collapses past
  its capacity (``QF_DEMO_COLLAPSE_KNEE``, ``QF_DEMO_ERROR_LIMIT``);
- ``queued``: queuefront's queued route ``/api/items/{i}`` in front of that same backend
  (the worker makes at most as many calls at once as the backend has workers);
- ``cached``: queuefront's cached route ``/api/products/SER-1``, warmed first.

A level PASSES when every request is answered 2xx and the last answer arrives within
the sending window plus the route's reply window (see ``bench/sla_stats.py``). A path
stops after ``--stop-after-fails`` failed levels in a row. Then comes the overload row:
twice the queued route's measured capacity, with goodput, every answer by status, the
p99 latency of the 503s and the share of 504s, checked against the issue's targets.

The load generator is ``bench/openloop.py`` (open loop, so the table cannot hide
stalls); the capacities are measured with ``bench/closedloop.py`` (wrk). Everything runs
on 127.0.0.1 on free ports, every level is bounded in time and count, and every process
this starts is stopped at the end (also on Ctrl-C or SIGTERM). Results (per-request
records, a JSON summary, the tables, the plot) go to ``bench/results/sla-<time>/``;
``--save-readme-plot`` also writes ``docs/sla.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gzip
import math
import os
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import uvloop
from redis.asyncio import Redis

from bench import closedloop
from bench.closedloop import WrkResult
from bench.measure import CpuMeter, process_reader
from bench.openloop import OpenLoopResult, open_loop, outcome_name
from bench.sla_report import (
    PATH_LABELS,
    Capacity,
    cpu_table,
    others_table,
    overload_table,
    plot,
    seed_table,
    targets_lines,
    write_json,
)
from bench.sla_stats import LevelSummary, overload_targets, summarize
from devstack import ROOT, Proc, Stack, new_stack_env, start_backend, start_emulator
from queuefront.queues import delete_queues, ensure_queues
from queuefront.routes import load_routes
from queuefront.settings import Settings
from queuefront.sqs import open_client
from queuefront.telemetry import configure_logging

REDIS_URL = os.environ.get("QF_REDIS_URL", "redis://127.0.0.1:6379/0")
BACKEND_WORKERS = 20
"""With 30 ms each: 667 requests/s = 40,000/min nominal (about 600/s measured here). The
goal is a queued route that passes at 35,000/min, and a queue cannot pass a sustained
level its backend cannot serve: the backend must be able to take that much, and the old
architecture runs against the same backend."""
SEED_LEVELS = [600, 1_200, 2_000, 3_500]
DEFAULT_LEVELS = [
    *SEED_LEVELS, 5_000, 10_000, 20_000, 35_000, 40_000, 45_000, 60_000, 120_000, 300_000
]
QUICK_LEVELS = [2_000, 35_000]
PATHS = ("old", "queued", "cached")
CACHED_SERIAL = "SER-1"
API_GATEWAY_LIMIT_S = 30.0
"""The client gives up after this long: API Gateway's integration limit (29 s) + 1 s."""
SETTLE_LIMIT_S = 60.0
"""Longest wait for the backend and the queue to empty between levels."""
FD_RESERVE = 500
"""File descriptors left for everything but the generator's connections."""
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
"""For the bench's own requests (warm-up, the backend's /__stats)."""
RESULTS = ROOT / "bench" / "results"
README_PLOT = ROOT / "docs" / "sla.png"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def raise_fd_limit() -> int:
    """Soft fd limit up to the hard one (children inherit it); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass(frozen=True)
class Endpoint:
    """Where one path's requests go."""

    name: str
    port: int
    path: str
    reply_window_s: float


@dataclass
class Bench:
    args: argparse.Namespace
    out_dir: Path
    backend_port: int
    api_port: int
    settings: Settings
    pids: dict[str, int]
    max_connections: int

    def endpoint(self, name: str) -> Endpoint:
        routes = load_routes(ROOT / "config" / "routes.toml")
        item, product = routes.get("item"), routes.get("products_and_promotions")
        if name == "old":
            # the old architecture has no reply window of its own: the kiosk's is the same
            return Endpoint(name, self.backend_port, "/items/{i}", item.timeout_s)
        if name == "queued":
            return Endpoint(name, self.api_port, "/api/items/{i}", item.timeout_s)
        return Endpoint(name, self.api_port, f"/api/products/{CACHED_SERIAL}", product.timeout_s)

    async def backend_in_flight(self) -> int:
        url = f"http://127.0.0.1:{self.backend_port}/__stats"
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.get(url) as resp:
            return int((await resp.json())["in_flight"])

    async def settle(self) -> None:
        """Waits (bounded) until the last level's work is gone, then a short pause."""
        deadline = time.monotonic() + SETTLE_LIMIT_S
        async with open_client(self.settings) as sqs:
            url = (await sqs.get_queue_url(QueueName=self.settings.queue_normal))["QueueUrl"]
            while time.monotonic() < deadline:
                attrs = await sqs.get_queue_attributes(
                    QueueUrl=url,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                    ],
                )
                queued = sum(int(v) for v in attrs.get("Attributes", {}).values())
                if queued == 0 and await self.backend_in_flight() == 0:
                    break
                await asyncio.sleep(0.5)
            else:
                log("backend or queue still busy after the settle limit; going on")
        await asyncio.sleep(self.args.cooldown_s)

    def cpu_meter(self) -> CpuMeter:
        return CpuMeter({name: process_reader(pid) for name, pid in self.pids.items()})

    async def run_level(
        self, target: Endpoint, level_per_min: int, window_s: float
    ) -> LevelSummary:
        n = max(1, round(level_per_min * window_s / 60))
        load = os.getloadavg()[0]
        meter, wall0 = self.cpu_meter(), time.perf_counter()
        result = await open_loop(
            "127.0.0.1",
            target.port,
            target.path,
            n=n,
            window_s=window_s,
            timeout_s=self.args.client_timeout_s,
            max_connections=self.max_connections,
        )
        wall = time.perf_counter() - wall0
        used = meter.used_s()
        row = summarize(target.name, level_per_min, target.reply_window_s, result)
        row.load_average = load
        row.cpu_cores = {name: seconds / wall for name, seconds in used.items()}
        row.cpu_cores["generator"] = result.cpu_s / wall
        self.save_requests(target.name, level_per_min, result)
        log(
            f"{target.name:>6} {level_per_min:>9,}/min: {row.verdict} "
            f"{row.ok:,}/{row.n:,} 2xx, p99 {row.p99_ms:,.0f} ms, last {row.last_answer_s:.1f} s"
            f"; generator {row.gen_cpu_us_per_request:.0f} µs/req, "
            f"dispatch lag p99 {row.dispatch_lag_p99_ms:.1f} ms; others: {row.others()}"
        )
        return row

    def save_requests(self, path: str, level: int, result: OpenLoopResult) -> None:
        """Every request's record, for whoever wants to look past the summary."""
        target = self.out_dir / "requests" / f"{path}-{level}.csv.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(target, "wt", compresslevel=1, newline="") as f:
            out = csv.writer(f)
            out.writerow(["i", "scheduled_s", "sent_s", "end_s", "outcome", "latency_ms"])
            for i in range(result.n):
                status = result.status[i]
                out.writerow(
                    [
                        i,
                        f"{result.scheduled(i):.6f}",
                        f"{result.sent[i]:.6f}",
                        f"{result.end[i]:.6f}",
                        outcome_name(status) if status else "unresolved",
                        f"{result.latency_s(i) * 1000:.3f}",
                    ]
                )


async def warm_cache(api_url: str) -> None:
    """Fills the cached route and checks that it is served from cache."""
    url = f"{api_url}/api/products/{CACHED_SERIAL}"
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
        for _ in range(20):
            async with http.get(url) as resp:
                await resp.read()
                if resp.status == 200 and resp.headers.get("X-Cache") == "HIT":
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} is not served from cache after 20 tries")


async def closed_loop(port: int, template: str, connections: int, seconds: int) -> WrkResult:
    """What a path sustains with ``connections`` clients each waiting on its answer (wrk,
    every request a new item), run in a thread so the event loop stays free meanwhile."""
    return await asyncio.to_thread(
        closedloop.run,
        f"http://127.0.0.1:{port}",
        seconds=seconds,
        connections=connections,
        lua=closedloop.path_script(template),
    )


async def measure_capacity(bench: Bench) -> Capacity:
    args = bench.args
    nominal = args.backend_workers * 1000 / args.backend_service_ms
    backend = await closed_loop(
        bench.backend_port,
        "/items/capacity-{i}",
        args.backend_workers,  # at the knee, never past it
        args.capacity_s,
    )
    # a short warm-up, so the measurement does not include the first connections
    await closed_loop(bench.api_port, "/api/items/warm-{i}", 8, 1)
    queued = await closed_loop(
        bench.api_port, "/api/items/capacity-{i}", args.capacity_concurrency, args.capacity_s
    )
    cap = Capacity(nominal, backend.ok_per_s, queued.ok_per_s)
    log(
        f"capacity: backend {nominal:,.0f}/s nominal, {backend.ok_per_s:,.0f}/s measured "
        f"({answers(backend)}); queued route {queued.ok_per_s:,.0f}/s "
        f"= {queued.ok_per_s * 60:,.0f}/min ({answers(queued)})"
    )
    return cap


def answers(result: WrkResult) -> str:
    return (
        f"{result.requests:,} answers, {result.non_2xx:,} not 2xx, "
        f"{result.socket_errors:,} socket errors"
    )


async def start(args: argparse.Namespace, log_dir: Path, procs: list[Proc]) -> Stack:
    sqs_url, sqs = await start_emulator(log_dir)
    procs.append(sqs)
    backend_url, backend = await start_backend(
        log_dir,
        QF_DEMO_LATENCY_MS=str(args.backend_service_ms),
        QF_DEMO_CONCURRENCY=str(args.backend_workers),
        QF_DEMO_COLLAPSE_KNEE=str(args.backend_knee),
        QF_DEMO_ERROR_LIMIT=str(args.backend_error_limit),
        QF_LOG_LEVEL="WARNING",
    )
    procs.append(backend)
    env = new_stack_env(
        {
            "QF_SQS_ENDPOINT_URL": sqs_url,
            "QF_REDIS_URL": REDIS_URL,
            "QF_BACKEND_URL": backend_url,
            "QF_AUTH_DISABLED": "true",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        }
    )
    env["QF_LOG_LEVEL"] = "WARNING"  # a log line per request would eat the CPU measured
    # by default half the backend's knee: more calls than it has workers (its own queue
    # covers the worker's per-call overhead, so the backend never idles) and never near
    # the knee, so it never thrashes
    env["QF_WORKER_CONCURRENCY"] = str(args.worker_concurrency)
    stack = Stack(env=env, log_dir=log_dir)
    await ensure_queues(stack.settings(), wait_s=10)
    await stack.start_api()
    await stack.start_worker()
    return stack


async def run(args: argparse.Namespace) -> None:
    fd_limit = raise_fd_limit()
    out_dir = RESULTS / time.strftime("sla-%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix="qf-sla-"))
    procs: list[Proc] = []
    stack: Stack | None = None
    redis = Redis.from_url(REDIS_URL)
    rows: dict[tuple[str, int], LevelSummary] = {}
    overload: list[LevelSummary] = []
    load_before = os.getloadavg()
    started = time.monotonic()
    try:
        stack = await start(args, log_dir, procs)
        redis_pid = int((await redis.info("server"))["process_id"])
        pids = {p.name: p.popen.pid for p in [*procs, *stack.procs]}
        bench = Bench(
            args,
            out_dir,
            backend_port=urlsplit(stack.env["QF_BACKEND_URL"]).port or 80,
            api_port=stack.api_port,
            settings=stack.settings(),
            pids={**pids, "redis": redis_pid},
            max_connections=min(args.max_connections, fd_limit - FD_RESERVE),
        )
        await warm_cache(stack.api_url)
        capacity = await measure_capacity(bench)
        cap_per_s = args.capacity_per_s or capacity.queued_measured_per_s
        for name in args.paths:
            target, fails = bench.endpoint(name), 0
            for level in args.levels:
                if fails >= args.stop_after_fails:
                    break
                row = await bench.run_level(target, level, args.window_s)
                rows[(name, level)] = row
                fails = 0 if row.passed else fails + 1
                await bench.settle()
        if not args.no_overload:
            level = round(2 * cap_per_s * 60)
            for name in [p for p in ("queued", "old") if p in args.paths]:
                overload.append(await bench.run_level(bench.endpoint(name), level, args.window_s))
                await bench.settle()
    finally:
        await redis.aclose()
        if stack is not None:
            stack.stop_all()
            await delete_queues(stack.settings())
        for proc in reversed(procs):
            proc.stop()
    report(args, out_dir, rows, overload, capacity, cap_per_s, load_before, started, log_dir)


def report(
    args: argparse.Namespace,
    out_dir: Path,
    rows: dict[tuple[str, int], LevelSummary],
    overload: Sequence[LevelSummary],
    capacity: Capacity,
    cap_per_s: float,
    load_before: tuple[float, float, float],
    started: float,
    log_dir: Path,
) -> None:
    load_after = os.getloadavg()
    reply_window_s = next(iter(rows.values())).reply_window_s if rows else math.nan
    lines = [
        f"## SLA table ({os.cpu_count()} cores; load average before {load_before[0]:.2f}, "
        f"after {load_after[0]:.2f}; {(time.monotonic() - started) / 60:.1f} min)",
        "",
        f"Backend: {args.backend_workers} workers x {args.backend_service_ms:g} ms "
        f"(capacity {capacity.backend_nominal_per_s:,.0f}/s nominal, "
        f"{capacity.backend_measured_per_s:,.0f}/s measured), collapse knee "
        f"{args.backend_knee} in flight, error limit {args.backend_error_limit}; "
        f"worker concurrency {args.worker_concurrency}. "
        f"Queued route capacity (closed loop, {args.capacity_concurrency} clients): "
        f"{capacity.queued_measured_per_s:,.0f}/s = "
        f"{capacity.queued_measured_per_s * 60:,.0f}/min.",
        "",
        f"Levels: N requests evenly over {args.window_s:g} s. PASS = all N answered 2xx and "
        f"the last answer within {args.window_s:g} s + the route's reply window "
        f"({reply_window_s:g} s), from the first scheduled send. Latencies of 2xx answers, "
        f"from each request's scheduled time; the client gives up after "
        f"{args.client_timeout_s:g} s.",
        "Paths: " + "; ".join(f"{p} = {PATH_LABELS[p]}" for p in args.paths) + ".",
        "",
        *seed_table(args.paths, args.levels, rows),
        "",
        *others_table(args.paths, args.levels, rows),
        "",
    ]
    if overload:
        lines += [
            f"### Overload: twice the queued route's capacity ({2 * cap_per_s:,.0f}/s for "
            f"{args.window_s:g} s)",
            "",
            *overload_table(overload, cap_per_s),
            "",
        ]
        queued = [r for r in overload if r.path == "queued"]
        if queued:
            lines += [
                "Targets (queued route):",
                *targets_lines(overload_targets(queued[0], cap_per_s)),
                "",
            ]
    lines += [
        "### CPU (cores used per process during each level) and the generator's cost",
        "",
        *cpu_table([*rows.values(), *overload]),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    (out_dir / "report.md").write_text(text + "\n")
    write_json(
        out_dir / "summary.json",
        {
            "args": vars(args),
            "capacity": vars(capacity),
            "capacity_used_per_s": cap_per_s,
            "levels": [r.to_json() for r in rows.values()],
            "overload": [r.to_json() for r in overload],
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
    )
    plots = [out_dir / "sla.png"]
    if args.save_readme_plot:
        plots.append(README_PLOT)
    plot(args.paths, [*rows.values(), *overload], cap_per_s, plots)
    print(f"\nresults: {out_dir} (process logs: {log_dir})")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The kiosk seed's SLA table for the old architecture and queuefront."
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 5 s windows, 2 levels")
    parser.add_argument("--levels", type=int, nargs="+", help="requests per minute, ascending")
    parser.add_argument("--window-s", type=float, help="sending window per level (60)")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--stop-after-fails", type=int, default=2)
    parser.add_argument("--client-timeout-s", type=float, default=API_GATEWAY_LIMIT_S)
    parser.add_argument("--cooldown-s", type=float, help="pause between levels (5)")
    parser.add_argument("--backend-workers", type=int, default=BACKEND_WORKERS)
    parser.add_argument("--backend-service-ms", type=float, default=30.0)
    parser.add_argument("--backend-knee", type=int, help="in flight (default 4 x workers)")
    parser.add_argument("--backend-error-limit", type=int, help="in flight (16 x workers)")
    parser.add_argument("--worker-concurrency", type=int, help="default: half the knee")
    parser.add_argument("--capacity-s", type=int, help="closed-loop capacity run (10)")
    parser.add_argument("--capacity-concurrency", type=int, default=128)
    parser.add_argument("--capacity-per-s", type=float, help="use this, not the measured one")
    parser.add_argument("--no-overload", action="store_true", help="skip the overload row")
    parser.add_argument("--max-connections", type=int, default=15_000)
    parser.add_argument("--save-readme-plot", action="store_true", help=f"also {README_PLOT}")
    args = parser.parse_args(argv)
    quick = args.quick
    args.levels = args.levels or (QUICK_LEVELS if quick else DEFAULT_LEVELS)
    args.window_s = args.window_s or (5.0 if quick else 60.0)
    args.cooldown_s = args.cooldown_s if args.cooldown_s is not None else (1.0 if quick else 5.0)
    args.capacity_s = args.capacity_s or (3 if quick else 10)
    # the knee well above the workers: below capacity, a short stall of this shared machine
    # must not tip the backend into collapse; past capacity the line grows and it will
    args.backend_knee = args.backend_knee or 4 * args.backend_workers
    args.backend_error_limit = args.backend_error_limit or 16 * args.backend_workers
    args.worker_concurrency = args.worker_concurrency or args.backend_knee // 2
    if sorted(args.levels) != args.levels or min(args.levels) <= 0:
        parser.error("--levels must be positive and ascending")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging("WARNING")  # the library's own info lines would drown the progress

    async def guarded() -> None:
        # SIGTERM cancels the run like Ctrl-C does, so `finally` stops every process
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await run(args)

    try:
        uvloop.run(guarded())
    except (asyncio.CancelledError, KeyboardInterrupt):
        log("interrupted; every process it had started is stopped")
        sys.exit(130)


if __name__ == "__main__":
    main()
