"""The api's memory while large requests wait for their replies: ``python -m bench.pending_memory``.

``--clients`` clients each POST one ``--body-kib`` body at the same moment to a proxied
route whose backend answers after ``--delay-s`` (a stand-in served by this command: it
reads and discards the body and answers 40 bytes, so only what the api holds of the
requests is measured, not echoed replies). The api process's resident memory is read
from ``/proc`` every 20 ms; the table shows it before the burst, at its peak (and the
kernel's high-water mark, ``VmHWM``), the statuses the clients got, and the machine's
load average around the run — a loaded machine stretches the burst.

Everything is on 127.0.0.1 with queues and keys of its own, bounded in clients and
time, and stops by itself. ``--env NAME=VALUE`` passes settings to the api (e.g.
``QF_MAX_PENDING_BYTES``), ``--max-body-bytes`` gives the route a body limit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from devstack import Stack, free_port, new_stack_env, start_emulator
from queuefront.queues import delete_queues, ensure_queues

REDIS_URL = os.environ.get("QF_REDIS_URL", "redis://127.0.0.1:6379/0")
SAMPLE_S = 0.02
MIB = 1024 * 1024

ROUTE = """
[[routes]]
name = "upload"
method = "POST"
path = "/api/upload/{{id}}"
priority = "high"
timeout_s = {timeout_s}
public = true
{limit}
"""


def rss_bytes(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


async def slow_backend(delay_s: float) -> tuple[str, web.AppRunner]:
    async def handle(request: web.Request) -> web.Response:
        async for _ in request.content.iter_chunked(65536):
            pass  # read and dropped: the stand-in keeps nothing
        await asyncio.sleep(delay_s)
        return web.json_response({"ok": True, "padding": "x" * 16})

    app = web.Application(client_max_size=64 * MIB)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"http://127.0.0.1:{port}", runner


@dataclass
class Run:
    statuses: Counter[int]
    rss_before: int
    rss_peak: int
    hwm: int
    seconds: float
    load_before: float
    load_after: float
    examples: dict[int, str]


async def burst(stack: Stack, pid: int, args: argparse.Namespace) -> Run:
    body = b"a" * (args.body_kib * 1024)
    load_before = os.getloadavg()[0]
    rss_before, _ = rss_bytes(pid)
    peak = rss_before
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes(pid)[0])
            await asyncio.sleep(SAMPLE_S)

    sampler = asyncio.create_task(sample())
    examples: dict[int, str] = {}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=args.timeout_s + 30)
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def one(i: int) -> int:
            try:
                async with http.post(f"{stack.api_url}/api/upload/{i}", data=body) as resp:
                    answer = await resp.read()
                    if resp.status >= 400:
                        examples.setdefault(resp.status, answer.decode(errors="replace")[:300])
                    return resp.status
            except aiohttp.ClientError:
                return 0  # the connection was dropped: counted as status 0

        statuses = Counter(await asyncio.gather(*(one(i) for i in range(args.clients))))
    seconds = time.monotonic() - started
    done.set()
    await sampler
    _, hwm = rss_bytes(pid)
    return Run(
        statuses, rss_before, peak, hwm, seconds, load_before, os.getloadavg()[0], examples
    )


async def main_async(args: argparse.Namespace) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="qf-bench-memory-"))
    routes = log_dir / "routes.toml"
    limit = f"max_body_bytes = {args.max_body_bytes}" if args.max_body_bytes else ""
    routes.write_text(ROUTE.format(timeout_s=args.timeout_s, limit=limit))
    sqs_url, sqs = await start_emulator(log_dir)
    backend_url, backend = await slow_backend(args.delay_s)
    base = {
        "QF_SQS_ENDPOINT_URL": sqs_url,
        "QF_REDIS_URL": REDIS_URL,
        "QF_BACKEND_URL": backend_url,
        "QF_ROUTES_FILE": str(routes),
        "QF_LOG_LEVEL": "WARNING",
        "QF_WORKER_CONCURRENCY": str(args.clients),
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    stack = Stack(env=new_stack_env(base), log_dir=log_dir)
    settings = stack.settings()
    await ensure_queues(settings, wait_s=10)
    extra = dict(item.split("=", 1) for item in args.env)
    try:
        api = await stack.start_api(**extra)
        await stack.start_worker()
        await asyncio.sleep(2)  # the worker's first drain report reaches the api
        run = await burst(stack, api.popen.pid, args)
    finally:
        stack.stop_all()
        await delete_queues(settings)
        await backend.cleanup()
        sqs.stop()
    statuses = ", ".join(f"{n} x {s}" for s, n in sorted(run.statuses.items()))
    print(
        "| label | clients x body | backend | api RSS before | peak RSS | VmHWM "
        "| statuses | seconds | load avg (1 min) before / after |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.label} | {args.clients} x {args.body_kib} KiB | {args.delay_s:g} s "
        f"| {run.rss_before / MIB:.0f} MiB | {run.rss_peak / MIB:.0f} MiB "
        f"| {run.hwm / MIB:.0f} MiB | {statuses} | {run.seconds:.1f} "
        f"| {run.load_before:.2f} / {run.load_after:.2f} |"
    )
    for status, text in sorted(run.examples.items()):
        print(f"\n{status}: {text}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--body-kib", type=int, default=900)
    parser.add_argument("--delay-s", type=float, default=3.0)
    parser.add_argument("--timeout-s", type=float, default=20.0, help="the route's window")
    parser.add_argument("--max-body-bytes", type=int, default=0, help="the route's limit")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the api")
    parser.add_argument("--label", default="api")
    args = parser.parse_args()
    assert args.clients <= 1000 and args.body_kib <= 1024, "bounded: at most 1000 x 1 MiB"
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
