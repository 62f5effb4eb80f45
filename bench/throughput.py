"""Throughput and CPU per request: ``make bench`` (or ``python -m bench.throughput``).

The table of the "Throughput and CPU per request" section of docs/benchmarks.md,
measured the way a user of ``make run`` would: a C load generator that costs little CPU
(``wrk -t1 -c64``, Debian's package: ``bench/closedloop.py``) against one stack started
here on free ports — the SQS emulator, the demo backend (20 ms per request, 64 at once),
one api, one worker, one writer on a fresh database — and four paths in turn, each round
in the same order:

- ``direct``: straight to the demo backend (the reference of the proxy ratio);
- ``proxied``: a queued route (``/api/items/{n}``) through api, SQS, worker, backend;
- ``cached``: a cached route, warm (``/api/products/SER-1``);
- ``votes``: the write path (``POST /api/polls/{p}/votes``), then a check that every
  accepted vote is in Postgres within ``STORED_WITHIN_S``.

CPU per request comes from ``/proc`` (utime + stime of each process and its children,
``bench/measure.py``) read before and after each run, divided by the requests answered
(and the whole machine's busy time from ``/proc/stat``, which includes Postgres, Redis,
the kernel and wrk itself); the Fargate price is ``ms of CPU x 1e6 / 1000`` vCPU-seconds
per million requests at ``VCPU_HOUR_USD``. Rounds are repeated and medians quoted, since
the load generator shares the cores.

Every run also writes its figures — CPU and SQS calls per request per path and process,
the machine's speed probe — to ``bench/figures/throughput.json`` (``--figures``; format in
``bench/scaling/figures.py``), which the scaling simulator (``python -m bench.scaling``)
reads: commit the file when the figures are meant to replace the previous ones.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench import closedloop
from bench.closedloop import WrkResult
from bench.measure import CpuMeter, machine_reader, process_reader, speed_probe_s
from bench.scaling.figures import FIGURES_PATH, PathFigures, ThroughputFigures
from devstack import Proc, Stack, metric, new_stack_env, start_backend, start_emulator
from queuefront.migrate import migrate
from queuefront.queues import delete_queues, ensure_queues

PG = os.environ.get("QF_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("QF_REDIS_URL", "redis://127.0.0.1:6379/0")
BACKEND_LATENCY_MS = 20
BACKEND_CONCURRENCY = 64
STORED_WITHIN_S = 10.0
"""The issue's check: every accepted vote is stored this long after the last answer."""
VCPU_HOUR_USD = 0.04048
"""Fargate Linux/x86 price per vCPU-hour (us-east-1, on demand, 2026)."""


@dataclass
class Sample:
    wrk: WrkResult
    cpu_ms: dict[str, float]
    """ms of CPU per answered request, per process group."""
    stored_ok: bool | None = None
    sqs_calls: dict[str, float] = field(default_factory=dict)
    """SQS calls per answered request, per process group (their own counters)."""


@dataclass
class Series:
    samples: list[Sample] = field(default_factory=list)

    def med(self, pick: str) -> float:
        return float(statistics.median(getattr(s.wrk, pick) for s in self.samples))

    def cpu(self, group: str) -> float:
        return statistics.median(s.cpu_ms.get(group, 0.0) for s in self.samples)

    def sqs(self, group: str) -> float:
        return statistics.median(s.sqs_calls.get(group, 0.0) for s in self.samples)


def cpu_meter(procs: dict[str, Proc]) -> CpuMeter:
    """CPU of named process groups (each a process tree) and of the whole machine."""
    readers = {k: process_reader(p.popen.pid) for k, p in procs.items()}
    return CpuMeter({**readers, "machine": machine_reader()})


def per_request_ms(meter: CpuMeter, answered: int) -> dict[str, float]:
    """ms of CPU per answered request of each group the meter reads, since it started."""
    return {k: 1000.0 * v / max(answered, 1) for k, v in meter.used_s().items()}


async def count_rows(db_url: str) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM votes"))
    finally:
        await conn.close()


async def stored_within(db_url: str, expected: int, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if await count_rows(db_url) >= expected:
            return True
        await asyncio.sleep(0.1)
    return await count_rows(db_url) >= expected


@dataclass
class NativeStack:
    """One stack as ``make run`` starts it, on free ports, with a fresh database."""

    api_url: str
    backend_url: str
    db_url: str
    votes_script: str
    """The Lua script of the votes path (``closedloop.votes_script``)."""
    groups: dict[str, Proc]
    """The processes whose CPU a run reports: api, worker, writer, emulator."""
    backend: Proc


@contextlib.asynccontextmanager
async def native_stack(
    api_processes: int, worker_concurrency: int, backend_limit: int = 0
) -> AsyncIterator[NativeStack]:
    """Starts the emulator, the demo backend, an api, a worker and a writer; stops them
    all and drops the database and the queues at the end. ``bench.compose`` measures
    the same votes path on it, in the same run as the compose stack."""
    log_dir = Path(tempfile.mkdtemp(prefix="qf-bench-throughput-"))
    sqs_url, sqs = await start_emulator(log_dir)
    backend_url, backend = await start_backend(
        log_dir,
        QF_DEMO_LATENCY_MS=str(BACKEND_LATENCY_MS),
        QF_DEMO_CONCURRENCY=str(BACKEND_CONCURRENCY),
    )
    db_name = f"qfbench_{uuid.uuid4().hex[:8]}"
    db_url = f"{PG}/{db_name}"
    await migrate(db_url)
    base = {
        "QF_SQS_ENDPOINT_URL": sqs_url,
        "QF_REDIS_URL": REDIS_URL,
        "QF_BACKEND_URL": backend_url,
        "QF_ROUTES_FILE": "config/routes.toml",
        "QF_DATABASE_URL": db_url,
    }
    stack = Stack(env={**new_stack_env(base), "QF_LOG_LEVEL": "WARNING"}, log_dir=log_dir)
    settings = stack.settings()
    await ensure_queues(settings, wait_s=10)
    try:
        api = await stack.start_api(QF_API_PROCESSES=str(api_processes))
        worker = await stack.start_worker(
            QF_WORKER_CONCURRENCY=str(worker_concurrency),
            QF_BACKEND_MAX_CONCURRENCY=str(backend_limit),
        )
        writer = await stack.start_writer()
        groups = {"api": api, "worker": worker, "writer": writer, "emulator": sqs}
        # warm: the cached serial is filled once, every path has been used once
        for path in ("/api/products/SER-1", "/api/items/warm"):
            closedloop.run(stack.api_url + path, seconds=1, connections=4)
        yield NativeStack(
            stack.api_url, backend_url, db_url, closedloop.votes_script(), groups, backend
        )
    finally:
        stack.stop_all()
        await delete_queues(settings)
        backend.stop()
        sqs.stop()
        conn = await asyncpg.connect(f"{PG}/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        finally:
            await conn.close()


SQS_CALLS_METRIC = "queuefront_sqs_calls_total"
QUEUEFRONT_GROUPS = ("api", "worker", "writer")


async def sqs_calls(native: NativeStack) -> dict[str, float]:
    """SQS calls so far of each queuefront process, from its own /metrics."""
    return {
        g: await metric(native.groups[g].metrics_url, SQS_CALLS_METRIC)
        for g in QUEUEFRONT_GROUPS
        if g in native.groups
    }


async def measure(
    native: NativeStack, name: str, url: str, lua: str | None, seconds: int, connections: int
) -> Sample:
    """One wrk run on one path, with the CPU it cost; for votes, whether every accepted
    vote was stored within ``STORED_WITHIN_S``."""
    meters = {"backend": native.backend} if name == "direct" else native.groups
    rows_before = await count_rows(native.db_url) if name == "votes" else 0
    # read outside the CPU window: the scrape costs the processes a little CPU
    calls_before = await sqs_calls(native) if name != "direct" else {}
    meter = cpu_meter(meters)
    result = closedloop.run(url, seconds=seconds, connections=connections, lua=lua)
    answered = result.ok
    sample = Sample(result, {})
    if name == "votes":
        sample.stored_ok = await stored_within(
            native.db_url, rows_before + answered, STORED_WITHIN_S
        )
    # writer CPU includes the storing that runs after wrk stops
    sample.cpu_ms = per_request_ms(meter, answered)
    if calls_before:
        calls_after = await sqs_calls(native)
        sample.sqs_calls = {
            g: (calls_after[g] - calls_before[g]) / max(answered, 1) for g in calls_before
        }
    return sample


async def main_async(args: argparse.Namespace) -> None:
    assert closedloop.wrk_path(), closedloop.INSTALL_HINT
    series: dict[str, Series] = {}
    probes = [speed_probe_s()]
    async with native_stack(
        args.api_processes, args.worker_concurrency, args.backend_limit
    ) as native:
        targets: dict[str, tuple[str, str | None]] = {
            "direct": (native.backend_url + "/api/items/1", None),
            "proxied": (native.api_url + "/api/items/1", None),
            "cached": (native.api_url + "/api/products/SER-1", None),
            "votes": (native.api_url, native.votes_script),
        }
        chosen = {k: v for k, v in targets.items() if k in args.paths}
        for _ in range(args.rounds):
            for name, (url, lua) in chosen.items():
                sample = await measure(native, name, url, lua, args.seconds, args.connections)
                series.setdefault(name, Series()).samples.append(sample)
                await asyncio.sleep(args.pause_s)
            probes.append(speed_probe_s())
    report(series, args, probes)
    if args.figures:
        figures(series, args, probes).save(Path(args.figures))
        print(f"\nfigures written to {args.figures}")


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except OSError:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def figures(
    series: dict[str, Series], args: argparse.Namespace, probes: list[float]
) -> ThroughputFigures:
    """The run's figures in the format the scaling simulator reads
    (``bench/scaling/figures.py``)."""
    groups = ("api", "worker", "writer", "emulator", "machine")
    paths = {}
    for name, s in series.items():
        cpu_groups = ("backend", "machine") if name == "direct" else groups
        paths[name] = PathFigures(
            requests_per_s=round(s.med("rps"), 1),
            p50_ms=round(s.med("p50_ms"), 2),
            p99_ms=round(s.med("p99_ms"), 2),
            rounds=len(s.samples),
            cpu_ms_per_request={g: round(s.cpu(g), 4) for g in cpu_groups},
            sqs_calls_per_request=(
                {} if name == "direct" else {g: round(s.sqs(g), 4) for g in QUEUEFRONT_GROUPS}
            ),
        )
    return ThroughputFigures(
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        commit=git_commit(),
        command="python -m bench.throughput " + " ".join(sys.argv[1:]),
        machine={
            "cores": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "speed_probe_s": [round(x, 3) for x in probes],
        },
        setup={
            "api_processes": args.api_processes,
            "worker_concurrency": args.worker_concurrency,
            "backend_limit": args.backend_limit,
            "backend_latency_ms": BACKEND_LATENCY_MS,
            "backend_concurrency": BACKEND_CONCURRENCY,
            "connections": args.connections,
            "seconds": args.seconds,
            "rounds": args.rounds,
        },
        paths=paths,
    )


def report(series: dict[str, Series], args: argparse.Namespace, probes: list[float]) -> None:
    load = os.getloadavg()
    print(
        f"\nwrk -t1 -c{args.connections} -d{args.seconds}s, {args.rounds} rounds (medians), "
        f"{os.cpu_count()} cores, {args.api_processes} api process(es), worker concurrency "
        f"{args.worker_concurrency}, shared backend limit {args.backend_limit or 'off'}, "
        f"backend {BACKEND_LATENCY_MS} ms x {BACKEND_CONCURRENCY}; "
        f"load average after: "
        f"{load[0]:.2f} {load[1]:.2f}; speed probe (s, lower is faster) before and after "
        f"each round: {' '.join(f'{x:.2f}' for x in probes)}"
    )
    direct = series["direct"].med("rps") if "direct" in series else None
    print(
        "| path | req/s | x direct | p50 ms | p99 ms | non-2xx | socket errors "
        "| CPU ms/req api | worker | writer | emulator | whole machine "
        "| vCPU-s per 1M (api+worker+writer) | USD per 1M |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, s in series.items():
        rps = s.med("rps")
        ratio = f"{rps / direct:.2f}" if direct and name in ("proxied", "cached") else "-"
        ours = sum(s.cpu(g) for g in ("api", "worker", "writer"))
        stored = ""
        if name == "votes":
            ok = all(x.stored_ok for x in s.samples)
            stored = f" (all stored within {STORED_WITHIN_S:.0f} s: {'yes' if ok else 'NO'})"
        cpu_cells = (
            f"{s.cpu('backend'):.2f} (backend) | - | - | -"
            if name == "direct"
            else f"{s.cpu('api'):.2f} | {s.cpu('worker'):.2f} | {s.cpu('writer'):.2f} | "
            f"{s.cpu('emulator'):.2f}"
        ) + f" | {s.cpu('machine'):.2f}"
        vcpu_s = ours * 1e6 / 1000.0
        price = "-" if name == "direct" else f"{vcpu_s * VCPU_HOUR_USD / 3600:.4f}"
        print(
            f"| {name}{stored} | {rps:.0f} | {ratio} | {s.med('p50_ms'):.1f} | "
            f"{s.med('p99_ms'):.1f} | {sum(x.wrk.non_2xx for x in s.samples)} | "
            f"{sum(x.wrk.socket_errors for x in s.samples)} | {cpu_cells} | "
            f"{'-' if name == 'direct' else f'{vcpu_s:.0f}'} | {price} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--api-processes", type=int, default=1)
    # as make run: the worker takes as many calls at once as the demo backend serves, so
    # the proxied path and the direct one use the backend alike
    parser.add_argument("--worker-concurrency", type=int, default=BACKEND_CONCURRENCY)
    # QF_BACKEND_MAX_CONCURRENCY: a lease in Redis per backend call (0: off, as by default)
    parser.add_argument("--backend-limit", type=int, default=0)
    parser.add_argument("--pause-s", type=float, default=2.0)
    parser.add_argument("--paths", nargs="+", default=["direct", "proxied", "cached", "votes"])
    parser.add_argument(
        "--figures",
        default=str(FIGURES_PATH),
        help="where to write the figures the scaling simulator reads ('' to skip)",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
