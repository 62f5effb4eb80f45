"""Throughput and CPU per request, issue-style: ``python -m bench.throughput``.

The table of the "Throughput and CPU per request" section of docs/benchmarks.md, measured
the way a user of ``make run`` would: a C load generator that costs little CPU (``wrk
-t1 -c64``, Debian's package) against one stack started here on free ports — the SQS
emulator, the demo backend (20 ms per request, 64 at once), one api, one worker, one
writer on a fresh database — and four paths in turn, each round in the same order:

- ``direct``: straight to the demo backend (the reference of the proxy ratio);
- ``proxied``: a queued route (``/api/items/{n}``) through api, SQS, worker, backend;
- ``cached``: a cached route, warm (``/api/products/SER-1``);
- ``votes``: the write path (``POST /api/polls/{p}/votes``), then a check that every
  accepted vote is in Postgres within ``STORED_WITHIN_S``.

CPU per request comes from ``/proc`` (utime + stime of each process and its children)
read before and after each run, divided by the requests answered (and the whole
machine's busy time from ``/proc/stat``, which includes Postgres, Redis, the kernel and
wrk itself); the Fargate price is
``ms of CPU x 1e6 / 1000`` vCPU-seconds per million requests at ``VCPU_HOUR_USD``.
Rounds are repeated and medians quoted, since the load generator shares the cores.

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
import re
import shutil
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
CLK_TCK = os.sysconf("SC_CLK_TCK")

VOTE_SCRIPT = """
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  local body = string.format('{"choice":%d,"voter":"viewer-%d"}', n % 5, n)
  return wrk.format(nil, "/api/polls/bench/votes", nil, body)
end
"""


@dataclass
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int


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


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out: str) -> WrkResult:
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        requests=total,
        rps=rps,
        p50_ms=_ms(pct["50"]),
        p99_ms=_ms(pct["99"]),
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
    )


def run_wrk(url: str, seconds: int, connections: int, script: Path | None) -> WrkResult:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        args += ["-s", str(script)]
    out = subprocess.run(
        [*args, url], capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    return parse_wrk(out)


@dataclass(frozen=True)
class ProcStat:
    name: str
    parent: int
    cpu_s: float
    """utime + stime so far."""


def processes() -> dict[int, ProcStat]:
    """Every process of the machine, from one pass over ``/proc/<pid>/stat``."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1]
            fields = rest.split()
            cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
            out[int(entry.name)] = ProcStat(name, int(fields[1]), cpu)
    return out


def cpu_seconds(pid: int) -> float:
    """CPU seconds of the process and its descendants (an api with several processes
    is a tree)."""
    procs = processes()
    children: dict[int, list[int]] = {}
    for child, stat in procs.items():
        children.setdefault(stat.parent, []).append(child)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += procs[p].cpu_s if p in procs else 0.0
        todo.extend(children.get(p, []))
    return total


def named_cpu_seconds(name: str) -> float | None:
    """CPU seconds of every process called ``name``; None when none runs."""
    used = [stat.cpu_s for stat in processes().values() if stat.name == name]
    return sum(used) if used else None


SPEED_PROBE_LOOPS = 30_000_000
"""A fixed pure-Python loop: ``sum(range(30_000_000))``."""


def speed_probe_s() -> float:
    """CPU seconds the fixed loop takes now: how fast this machine's cores are at the
    moment. On the development VM the same loop took 0.34 s at one moment and 0.60-0.69 s
    minutes later (a host shared with others), and every CPU-bound figure moved with it;
    each run prints the probe so its figures can be read against the machine's speed."""
    started = time.process_time()
    sum(range(SPEED_PROBE_LOOPS))
    return time.process_time() - started


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores, everything but idle and iowait):
    what a request costs including Postgres, Redis, the kernel and the load generator."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


class Meter:
    """CPU of named process groups (and of the whole machine) over one run."""

    def __init__(self, procs: dict[str, Proc]) -> None:
        self.procs = procs
        self._start = {k: cpu_seconds(p.popen.pid) for k, p in procs.items()}
        self._machine = machine_busy_seconds()

    def per_request_ms(self, answered: int) -> dict[str, float]:
        used = {k: cpu_seconds(p.popen.pid) - self._start[k] for k, p in self.procs.items()}
        used["machine"] = machine_busy_seconds() - self._machine
        return {k: 1000.0 * v / max(answered, 1) for k, v in used.items()}


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
    votes_script: Path
    groups: dict[str, Proc]
    """The processes whose CPU a run reports: api, worker, writer, emulator."""
    backend: Proc


@contextlib.asynccontextmanager
async def native_stack(api_processes: int, worker_concurrency: int) -> AsyncIterator[NativeStack]:
    """Starts the emulator, the demo backend, an api, a worker and a writer; stops them
    all and drops the database and the queues at the end. ``bench.compose`` measures
    the same votes path on it, in the same run as the compose stack."""
    log_dir = Path(tempfile.mkdtemp(prefix="qf-bench-throughput-"))
    script = log_dir / "votes.lua"
    script.write_text(VOTE_SCRIPT)
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
        worker = await stack.start_worker(QF_WORKER_CONCURRENCY=str(worker_concurrency))
        writer = await stack.start_writer()
        groups = {"api": api, "worker": worker, "writer": writer, "emulator": sqs}
        # warm: the cached serial is filled once, every path has been used once
        for path in ("/api/products/SER-1", "/api/items/warm"):
            run_wrk(stack.api_url + path, 1, 4, None)
        yield NativeStack(stack.api_url, backend_url, db_url, script, groups, backend)
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
    native: NativeStack, name: str, url: str, lua: Path | None, seconds: int, connections: int
) -> Sample:
    """One wrk run on one path, with the CPU it cost; for votes, whether every accepted
    vote was stored within ``STORED_WITHIN_S``."""
    meters = {"backend": native.backend} if name == "direct" else native.groups
    rows_before = await count_rows(native.db_url) if name == "votes" else 0
    # read outside the CPU window: the scrape costs the processes a little CPU
    calls_before = await sqs_calls(native) if name != "direct" else {}
    meter = Meter(meters)
    result = run_wrk(url, seconds, connections, lua)
    answered = result.requests - result.non_2xx
    sample = Sample(result, {})
    if name == "votes":
        sample.stored_ok = await stored_within(
            native.db_url, rows_before + answered, STORED_WITHIN_S
        )
    # writer CPU includes the storing that runs after wrk stops
    sample.cpu_ms = meter.per_request_ms(answered)
    if calls_before:
        calls_after = await sqs_calls(native)
        sample.sqs_calls = {
            g: (calls_after[g] - calls_before[g]) / max(answered, 1) for g in calls_before
        }
    return sample


async def main_async(args: argparse.Namespace) -> None:
    assert shutil.which("wrk"), "wrk is needed (apt-get install wrk)"
    series: dict[str, Series] = {}
    probes = [speed_probe_s()]
    async with native_stack(args.api_processes, args.worker_concurrency) as native:
        targets: dict[str, tuple[str, Path | None]] = {
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
        f"{args.worker_concurrency}, backend {BACKEND_LATENCY_MS} ms x {BACKEND_CONCURRENCY}; "
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
