"""The compose stack's two issue checks: ``python -m bench.compose``.

Measures what a user of ``docker compose up`` gets, through the edge (nginx) on
``--url`` (default http://127.0.0.1:8080), against a stack that is already running
under the compose project ``--project`` — or, with ``--up``, one this command brings up
itself (``docker compose -p <project> up -d --build --wait``, without Grafana, whose
image is not needed here) and takes down again (``down -v``) at the end.

- **votes**: ``wrk -t1 -c64 -d15s`` POSTs ``{"choice":N,"voter":"viewer-N"}`` to
  ``/api/polls/<poll>/votes`` (``bench.closedloop.votes_script``, a new poll per
  round), counts the answers that are not 2xx, then checks that every accepted vote is
  in Postgres (``docker compose exec postgres psql``) within ``STORED_WITHIN_S``.
- **priority**: ``--normals`` slow normal requests (``GET /api/items/{n}`` with
  ``X-Demo-Delay-Ms: 500``) sent at once, then, from ``--high-after-s`` on, ``--highs``
  high requests (``POST /api/login``) one every ``--high-gap-ms``; each high's latency
  is measured from its own send. The normals' outcome: answers by status, p50/p99 and
  when the last one came.

Every check is repeated ``--rounds`` times and the medians are printed as markdown
rows, with the CPU each compose service used during the check and how long the kernel
held it back at its CPU limit (cgroup ``cpu.stat``: ``usage_usec``, ``throttled_usec``).
With ``--lock PATH`` each check's load runs under ``flock(PATH)`` (the machine's shared
benchmark lock), and nothing else does. Load goes to 127.0.0.1 only, bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import ipaddress
import json
import os
import statistics
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp

from bench import closedloop
from bench.closedloop import WrkResult
from bench.measure import (
    CpuMeter,
    CpuTime,
    container_cpu,
    machine_reader,
    named_cpu_s,
    named_reader,
    percentile,
    speed_probe_s,
    summed,
)
from bench.throughput import (
    BACKEND_CONCURRENCY,
    STORED_WITHIN_S,
    Sample,
    measure,
    native_stack,
)
from devstack import ROOT
from devstack.compose import COMPOSE_SERVICES as SERVICES

CLIENT_TIMEOUT_S = 60.0
EDGE_RESOLVE_S = 3.0
"""How often the edge re-resolves the api replicas (``QF_EDGE_RESOLVE_S``)."""
USERLAND_PROXY = "docker-proxy"
"""The engine's process that carries published ports reached over loopback (unless the
daemon runs with ``"userland-proxy": false``, when the kernel's NAT does it)."""
VIAS = {
    "edge": "127.0.0.1:8080, through the engine's published port, as a user",
    "edge-address": "the edge container's own address (no published-port path)",
    "api-address": "one api replica's own address (no edge, no published-port path)",
}
VIA_SERVICE = {"edge-address": "edge", "api-address": "api"}
"""The compose service whose own address a ``--via`` sends to (``edge``: ``--url``)."""


# --- the compose project ------------------------------------------------------------------


LOAD_ENV = {"QF_ANON_RATE_LIMIT_RPS": "0"}
"""The load comes from one address (this machine): the api's per-address limit is off
for the stacks this command starts (a project brought up by hand needs the same)."""


def compose(project: str, *args: str, timeout_s: float = 600) -> str:
    result = subprocess.run(
        ["docker", "compose", "-f", str(ROOT / "compose.yaml"), "-p", project, *args],
        cwd=ROOT,
        env={**os.environ, **LOAD_ENV},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"docker compose {' '.join(args)}: {result.stderr[-2000:]}")
    return result.stdout


def psql(project: str, sql: str) -> str:
    return compose(
        project,
        "exec",
        "-T",
        "postgres",
        "psql",
        "-U",
        "queuefront",
        "-d",
        "queuefront",
        "-At",
        "-c",
        sql,
        timeout_s=30,
    ).strip()


def containers(project: str) -> dict[str, list[str]]:
    """Running container ids by compose service."""
    out: dict[str, list[str]] = {}
    for line in compose(project, "ps", "--format", "json").splitlines():
        entries = json.loads(line)
        for c in entries if isinstance(entries, list) else [entries]:
            out.setdefault(c["Service"], []).append(c["ID"])
    return out


def container_ids(project: str) -> dict[str, list[str]]:
    """Full container ids by compose service (their cgroups are named by the full id)."""
    out: dict[str, list[str]] = {}
    for service, ids in containers(project).items():
        for short in ids:
            full = subprocess.run(
                ["docker", "inspect", "--format", "{{.Id}}", short],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            out.setdefault(service, []).append(full)
    return out


def service_meter(project: str) -> CpuMeter:
    """CPU seconds used and seconds throttled by each compose service (its containers'
    cgroups summed) over one check."""
    return CpuMeter(
        {
            service: summed([r for r in (container_cpu(i) for i in ids) if r is not None])
            for service, ids in container_ids(project).items()
        }
    )


def host_meter() -> CpuMeter:
    """The whole machine's busy CPU and the engine's userland proxy over one check: what
    the compose services' cgroups do not show."""
    return CpuMeter({"machine": machine_reader(), "docker-proxy": named_reader(USERLAND_PROXY)})


def address_of(project: str, service: str) -> str:
    """The first container of ``service`` on the project's own bridge network: a
    private address of a container this project started, reached without the
    engine's published-port path."""
    ids = containers(project).get(service)
    assert ids, f"no running {service} container"
    address = subprocess.run(
        [
            "docker",
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            ids[0],
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    assert ipaddress.ip_address(address).is_private, address
    return address


METRICS_SNIPPET = (
    "import urllib.request;"
    "print(urllib.request.urlopen('http://127.0.0.1:9100/metrics').read().decode())"
)


def api_route_time(project: str, route: str) -> tuple[float, float]:
    """(seconds, requests) the api replicas' handlers spent on ``route`` so far: the sum
    and count of ``queuefront_http_request_duration_seconds``, over every replica."""
    total = count = 0.0
    for index in range(1, len(containers(project).get("api", [])) + 1):
        out = compose(
            project,
            "exec",
            "-T",
            "--index",
            str(index),
            "api",
            "python",
            "-c",
            METRICS_SNIPPET,
            timeout_s=30,
        )
        for line in out.splitlines():
            if f'route="{route}"' not in line or line.startswith("#"):
                continue
            if line.startswith("queuefront_http_request_duration_seconds_sum"):
                total += float(line.rsplit(" ", 1)[1])
            elif line.startswith("queuefront_http_request_duration_seconds_count"):
                count += float(line.rsplit(" ", 1)[1])
    return total, count


@contextlib.contextmanager
def bench_lock(path: str | None) -> Iterator[None]:
    if path is None:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- the checks -----------------------------------------------------------------------


@dataclass
class VotesSample:
    wrk: WrkResult
    accepted: int
    stored_s: float | None
    """Seconds after wrk ended until every accepted vote was in Postgres (None: not in
    ``STORED_WITHIN_S``)."""
    cpu: dict[str, CpuTime]
    seconds: float
    load: float
    via: str = "edge"


@dataclass
class PrioritySample:
    high_ms: list[float]
    high_status: Counter[str]
    normal_ms: list[float]
    normal_status: Counter[str]
    last_normal_s: float
    cpu: dict[str, CpuTime]
    seconds: float
    load: float
    high_api_ms: float = float("nan")
    """Mean time of a high request inside the api's handler (the rest of what the
    client saw is the edge, the api's accept and parsing, and the network)."""


@dataclass
class Results:
    votes: list[VotesSample] = field(default_factory=list)
    priority: list[PrioritySample] = field(default_factory=list)
    native: list[Sample] = field(default_factory=list)
    """The votes path of the native stack (``bench.throughput``), in the same run."""
    probes: list[float] = field(default_factory=list)
    """``bench.measure.speed_probe_s`` before the first round and after each."""
    userland_proxy: bool = False
    """Whether the engine's userland proxy carried the published ports (read while the
    stack ran: its processes go with the stack)."""


def stored_count(project: str, poll: str) -> int:
    return int(psql(project, f"SELECT count(*) FROM votes WHERE poll_id = '{poll}'") or 0)


def votes_check(args: argparse.Namespace, via: str, url: str) -> VotesSample:
    poll = f"bench-{uuid.uuid4().hex[:8]}"
    script = closedloop.votes_script(f"/api/polls/{poll}/votes")
    with bench_lock(args.lock):
        load = os.getloadavg()[0]
        meter, host = service_meter(args.project), host_meter()
        started = time.monotonic()
        result = closedloop.run(url, seconds=args.seconds, connections=args.connections, lua=script)
        ended = time.monotonic()
        accepted = result.ok
        stored_s: float | None = None
        while time.monotonic() - ended <= STORED_WITHIN_S:
            if stored_count(args.project, poll) >= accepted:
                stored_s = time.monotonic() - ended
                break
            time.sleep(0.25)
        cpu = {**meter.used(), **host.used()}
        seconds = time.monotonic() - started
    return VotesSample(result, accepted, stored_s, cpu, seconds, load, via)


async def _priority(args: argparse.Namespace) -> PrioritySample:
    tag = uuid.uuid4().hex[:8]
    normal_ms: list[float] = []
    normal_status: Counter[str] = Counter()
    high_ms: list[float] = []
    high_status: Counter[str] = Counter()
    last_normal = 0.0
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        t0 = time.monotonic()

        async def one(method: str, path: str, headers: dict[str, str], high: bool) -> None:
            nonlocal last_normal
            sent = time.monotonic()
            try:
                async with http.request(method, args.url + path, headers=headers) as resp:
                    await resp.read()
                    status = str(resp.status)
            except TimeoutError:
                status = "client_timeout"
            except aiohttp.ClientError as exc:
                status = type(exc).__name__
            took = (time.monotonic() - sent) * 1000
            if high:
                high_status[status] += 1
                if status.startswith("2"):
                    high_ms.append(took)
            else:
                normal_status[status] += 1
                last_normal = max(last_normal, time.monotonic() - t0)
                if status.startswith("2"):
                    normal_ms.append(took)

        slow = {"X-Demo-Delay-Ms": str(args.normal_delay_ms)}
        normals = [
            asyncio.create_task(one("GET", f"/api/items/{tag}-{i}", slow, False))
            for i in range(args.normals)
        ]
        await asyncio.sleep(args.high_after_s)
        highs = []
        for _ in range(args.highs):
            highs.append(asyncio.create_task(one("POST", "/api/login", {}, True)))
            await asyncio.sleep(args.high_gap_ms / 1000)
        await asyncio.gather(*normals, *highs)
    return PrioritySample(high_ms, high_status, normal_ms, normal_status, last_normal, {}, 0, 0)


async def priority_check(args: argparse.Namespace) -> PrioritySample:
    with bench_lock(args.lock):
        load = os.getloadavg()[0]
        meter = service_meter(args.project)
        api_before = api_route_time(args.project, "login")
        started = time.monotonic()
        sample = await _priority(args)
        sample.cpu = meter.used()
        api_after = api_route_time(args.project, "login")
        spent, answered = (a - b for a, b in zip(api_after, api_before, strict=True))
        sample.high_api_ms = 1000 * spent / answered if answered else float("nan")
        sample.seconds = time.monotonic() - started
        sample.load = load
    return sample


# --- report -------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cpu_cells(samples: list[VotesSample] | list[PrioritySample], services: list[str]) -> str:
    cells = []
    for s in services:
        used = med([x.cpu.get(s, (0.0, 0.0))[0] / x.seconds for x in samples])
        thr = med([x.cpu.get(s, (0.0, 0.0))[1] / x.seconds for x in samples])
        cells.append(f"{used:.2f} ({thr:.2f})")
    return " | ".join(cells)


def report(results: Results, args: argparse.Namespace, label: str) -> None:
    services = ["edge", "api", "worker", "writer", "sqs", "backend", "redis", "postgres"]
    cpu_head = " | ".join(services)
    print(
        f"\n{args.rounds} rounds, medians; {os.cpu_count()} cores; load average "
        f"(1 min) before each check: "
        + ", ".join(
            f"{x:.2f}" for x in [s.load for s in results.votes] + [s.load for s in results.priority]
        )
        + "; speed probe (s, lower is faster) before and after each round: "
        + " ".join(f"{x:.2f}" for x in results.probes)
    )
    if results.votes or results.native:
        print(
            f"\nvotes: wrk -t1 -c{args.connections} -d{args.seconds}s POST "
            f"/api/polls/<poll>/votes; {args.api_replicas or 'default'} api replica(s); the "
            f"engine's userland proxy {'on' if results.userland_proxy else 'off'}\n"
        )
        print(
            "| stack | reached at | votes/s accepted | x native | p50 ms | p99 ms | non-2xx "
            f"| socket errors | all stored ≤{STORED_WITHIN_S:.0f} s (s after wrk) "
            "| whole machine CPU ms/vote |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        native = med([(x.wrk.requests - x.wrk.non_2xx) / args.seconds for x in results.native])
        if results.native:
            n = results.native
            print(
                f"| native (`make run` shape) | the api's port | {native:.0f} | 1.00 | "
                f"{med([x.wrk.p50_ms for x in n]):.1f} | {med([x.wrk.p99_ms for x in n]):.1f} | "
                f"{sum(x.wrk.non_2xx for x in n)} | {sum(x.wrk.socket_errors for x in n)} | "
                + ("yes" if all(x.stored_ok for x in n) else "NO")
                + f" | {med([x.cpu_ms['machine'] for x in n]):.2f} |"
            )
        for via in args.via:
            v = [x for x in results.votes if x.via == via]
            if not v:
                continue
            rate = med([x.accepted / args.seconds for x in v])
            stored = [x.stored_s for x in v]
            machine_ms = med([1000 * x.cpu["machine"][0] / max(x.accepted, 1) for x in v])
            print(
                f"| {label} | {VIAS[via]} | {rate:.0f} | "
                + (f"{rate / native:.2f}" if results.native else "-")
                + f" | {med([x.wrk.p50_ms for x in v]):.1f} | {med([x.wrk.p99_ms for x in v]):.1f}"
                f" | {sum(x.wrk.non_2xx for x in v)} | {sum(x.wrk.socket_errors for x in v)} | "
                + ("yes" if all(s is not None for s in stored) else "NO")
                + f" ({', '.join('-' if s is None else f'{s:.1f}' for s in stored)}) | "
                f"{machine_ms:.2f} |"
            )
    if results.priority:
        p = results.priority
        print(
            f"\npriority: {args.normals} x GET /api/items/{{n}} ({args.normal_delay_ms} ms at the "
            f"backend) at once, then {args.highs} x POST /api/login from "
            f"{args.high_after_s:g} s on, one per {args.high_gap_ms:g} ms\n"
        )
        print(
            "| stack | high p50 ms | high p99 ms | high mean ms (in the api handler) "
            "| high non-2xx | normals 2xx | normals other "
            "| normal p50 ms | normal p99 ms | last normal s |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        other: Counter[str] = Counter()
        for x in p:
            other.update({k: n for k, n in x.normal_status.items() if not k.startswith("2")})
        high_bad: Counter[str] = Counter()
        for x in p:
            high_bad.update({k: n for k, n in x.high_status.items() if not k.startswith("2")})
        print(
            f"| {label} | {med([percentile(x.high_ms, 0.5) for x in p]):.0f} | "
            f"{med([percentile(x.high_ms, 0.99) for x in p]):.0f} | "
            f"{med([statistics.fmean(x.high_ms) for x in p if x.high_ms]):.0f} "
            f"({med([x.high_api_ms for x in p]):.0f}) | {dict(high_bad) or 0} | "
            f"{med([float(len(x.normal_ms)) for x in p]):.0f} / {args.normals} | "
            f"{dict(other) or 0} | {med([percentile(x.normal_ms, 0.5) for x in p]):.0f} | "
            f"{med([percentile(x.normal_ms, 0.99) for x in p]):.0f} | "
            f"{med([x.last_normal_s for x in p]):.1f} |"
        )
    print(
        "\nCPU of each compose service during the check, in cores "
        "(in brackets: seconds per second held back at its CPU limit)\n"
    )
    print(f"| check | {cpu_head} | docker-proxy | whole machine |")
    print("|---|" + "---|" * (len(services) + 2))
    for via in args.via:
        v = [x for x in results.votes if x.via == via]
        if v:
            host = " | ".join(
                f"{med([x.cpu[k][0] / x.seconds for x in v]):.2f}"
                for k in ("docker-proxy", "machine")
            )
            print(f"| votes via {via} | {cpu_cells(v, services)} | {host} |")
    if results.priority:
        print(f"| priority | {cpu_cells(results.priority, services)} | - | - |")
    if results.votes or results.native:
        votes_cpu_per_vote(results, args)


def votes_cpu_per_vote(results: Results, args: argparse.Namespace) -> None:
    """ms of CPU per accepted vote, the native processes beside their compose services
    (the writer's storing after wrk stops included on both sides)."""
    pairs = [
        ("edge", None),
        ("api", "api"),
        ("sqs", "emulator"),
        ("writer", "writer"),
        ("postgres", None),
        ("docker-proxy", None),
        ("machine", "machine"),
    ]
    print("\nvotes: ms of CPU per accepted vote\n")
    print("| stack | reached at | " + " | ".join(c for c, _ in pairs) + " |")
    print("|---|---|" + "---|" * len(pairs))
    if results.native:
        cells = [
            "-" if n is None else f"{med([x.cpu_ms[n] for x in results.native]):.3f}"
            for _, n in pairs
        ]
        print("| native | the api's port | " + " | ".join(cells) + " |")
    for via in args.via:
        v = [x for x in results.votes if x.via == via]
        if v:
            cells = [
                f"{med([1000 * x.cpu.get(c, (0.0, 0.0))[0] / max(x.accepted, 1) for x in v]):.3f}"
                for c, _ in pairs
            ]
            print(f"| compose | {via} | " + " | ".join(cells) + " |")


async def run_checks(args: argparse.Namespace) -> Results:
    """Each round: the native votes path (with the compose stack paused, so neither
    takes CPU from the other), then each compose check and target in turn."""
    results = Results(
        userland_proxy=named_cpu_s(USERLAND_PROXY) is not None, probes=[speed_probe_s()]
    )
    urls = {
        via: f"http://{address_of(args.project, VIA_SERVICE[via])}:8080"
        if via in VIA_SERVICE
        else args.url
        for via in args.via
    }
    async with contextlib.AsyncExitStack() as stack:
        native = None
        if args.native:
            compose(args.project, "pause")
            try:
                native = await stack.enter_async_context(native_stack(1, BACKEND_CONCURRENCY))
            finally:
                compose(args.project, "unpause")
        for _ in range(args.rounds):
            if native is not None:
                compose(args.project, "pause")
                try:
                    with bench_lock(args.lock):
                        results.native.append(
                            await measure(
                                native,
                                "votes",
                                native.api_url,
                                native.votes_script,
                                args.seconds,
                                args.connections,
                            )
                        )
                finally:
                    compose(args.project, "unpause")
                await asyncio.sleep(args.pause_s)
            if "votes" in args.checks:
                for via in args.via:
                    sample = await asyncio.to_thread(votes_check, args, via, urls[via])
                    results.votes.append(sample)
                    await asyncio.sleep(args.pause_s)
            if "priority" in args.checks:
                results.priority.append(await priority_check(args))
                await asyncio.sleep(args.pause_s)
            results.probes.append(speed_probe_s())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the edge")
    parser.add_argument("--project", default="qfcompose", help="compose project name")
    parser.add_argument("--up", action="store_true", help="bring the stack up, and down -v after")
    parser.add_argument(
        "--checks", nargs="+", default=["votes", "priority"], choices=["votes", "priority"]
    )
    parser.add_argument(
        "--via",
        nargs="+",
        default=["edge"],
        choices=list(VIAS),
        help="where the votes check sends its load (each, in turn, every round)",
    )
    parser.add_argument(
        "--native",
        action="store_true",
        help="also measure the native stack's votes path each round (compose paused)",
    )
    parser.add_argument(
        "--api-replicas",
        type=int,
        default=0,
        help="scale the api to this many (0: as compose.yaml)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--normals", type=int, default=800)
    parser.add_argument("--normal-delay-ms", type=int, default=500)
    parser.add_argument("--highs", type=int, default=20)
    parser.add_argument("--high-after-s", type=float, default=1.0)
    parser.add_argument("--high-gap-ms", type=float, default=100.0)
    parser.add_argument("--pause-s", type=float, default=3.0)
    parser.add_argument("--label", default="compose")
    parser.add_argument("--lock", default=None, help="flock this file around each check's load")
    args = parser.parse_args()
    assert closedloop.wrk_path(), closedloop.INSTALL_HINT
    assert args.url.startswith(("http://127.0.0.1", "http://localhost")), "local stacks only"
    scale = ["--scale", f"api={args.api_replicas}"] if args.api_replicas else []
    if args.up:
        compose(args.project, "up", "-d", "--build", "--wait", *scale, *SERVICES)
    elif scale:
        compose(args.project, "up", "-d", "--wait", "--no-recreate", *scale, "api")
    try:
        if scale:
            time.sleep(2 * EDGE_RESOLVE_S)  # the edge follows the replicas every 3 s
        results = asyncio.run(run_checks(args))
    finally:
        if args.up:
            compose(args.project, "down", "-v")
    report(results, args, args.label)


if __name__ == "__main__":
    main()
