"""Ingest benchmark: ``python -m bench.ingest``.

Sends votes at the same concurrency for the same time (wrk, ``bench/closedloop.py``) to
three write paths, each on a fresh database, and reports items/s acknowledged, items/s
persisted (first request until the last accepted row is in Postgres), rows per commit
and SQS calls per item:

(a) one INSERT and commit per vote, before the answer (the voting seed's v1);
(b) queuefront with one SQS message per vote (``QF_INGEST_PACK_MAX=1``);
(c) queuefront with packing (``QF_INGEST_PACK_MAX`` = each value given).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

from bench import closedloop
from bench.closedloop import WrkResult
from devstack import Proc, Stack, free_port, metric, new_stack_env, spawn, start_emulator
from queuefront.migrate import migrate
from queuefront.queues import delete_queues, ensure_queues

PG = os.environ.get("QF_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("QF_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Run:
    label: str
    accepted_per_s: float
    persisted_per_s: float
    rows_per_commit: float
    sqs_per_item: float
    errors: int


async def send_votes(url: str, poll: str, seconds: int, concurrency: int) -> WrkResult:
    """Votes of new voters from ``concurrency`` clients for ``seconds`` (wrk, in a thread:
    the event loop is free meanwhile)."""
    return await asyncio.to_thread(
        closedloop.run,
        url,
        seconds=seconds,
        connections=concurrency,
        lua=closedloop.votes_script(f"/api/polls/{poll}/votes"),
    )


def errors(sent: WrkResult) -> int:
    """Answers that were not 2xx, and requests that got no answer."""
    return sent.non_2xx + sent.socket_errors


async def wait_rows(db_url: str, n: int, started: float, limit_s: float = 300) -> float:
    conn = await asyncpg.connect(db_url)
    try:
        while (await conn.fetchval("SELECT count(*) FROM votes")) < n:
            if time.perf_counter() - started > limit_s:
                raise TimeoutError("rows did not arrive")
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    return time.perf_counter() - started


async def fresh_db() -> tuple[str, str]:
    name = f"qfbench_{uuid.uuid4().hex[:8]}"
    url = f"{PG}/{name}"
    await migrate(url)
    return name, url


async def drop_db(name: str) -> None:
    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def run_direct(seconds: int, conc: int, log_dir: Path) -> Run:
    name, url = await fresh_db()
    port = free_port()
    proc = spawn(
        "direct",
        [sys.executable, "-m", "bench.direct_insert"],
        {
            "QF_DATABASE_URL": url,
            "QF_HTTP_PORT": str(port),
            "QF_ROUTES_FILE": "config/routes.toml",
        },
        log_dir,
    )
    try:
        await wait_http_post_ready(port, proc)
        started = time.perf_counter()
        sent = await send_votes(f"http://127.0.0.1:{port}", "p", seconds, conc)
        persist_s = await wait_rows(url, sent.ok, started)
        return Run(
            "(a) INSERT + commit per vote, no queue",
            sent.ok_per_s,
            sent.ok / persist_s,
            1.0,
            0.0,
            errors(sent),
        )
    finally:
        proc.stop()
        await drop_db(name)


async def wait_http_post_ready(port: int, proc: Proc) -> None:
    for _ in range(200):
        if proc.popen.poll() is not None:
            raise RuntimeError(proc.log())
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"http://127.0.0.1:{port}/api/polls/warm/votes", json={}) as resp,
            ):
                if resp.status == 400:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError("direct-insert baseline did not start")


async def run_queuefront(
    seconds: int, conc: int, pack: int, base: dict[str, str], log_dir: Path, batch_wait_s: float
) -> Run:
    name, url = await fresh_db()
    stack = Stack(
        env={**new_stack_env(base), "QF_LOG_LEVEL": "WARNING", "QF_DATABASE_URL": url},
        log_dir=log_dir,
    )
    settings = stack.settings()
    await ensure_queues(settings, wait_s=10)
    try:
        await stack.start_api(QF_INGEST_PACK_MAX=str(pack))
        writer = await stack.start_writer(QF_BATCH_MAX_WAIT_S=str(batch_wait_s))
        urls = [stack.api_metrics_url, writer.metrics_url]
        sqs_before = sum([await metric(u, "queuefront_sqs_calls_total") for u in urls])
        started = time.perf_counter()
        sent = await send_votes(stack.api_url, "p", seconds, conc)
        n = sent.ok
        persist_s = await wait_rows(url, n, started)
        sqs_after = sum([await metric(u, "queuefront_sqs_calls_total") for u in urls])
        commits = await metric(writer.metrics_url, "queuefront_ingest_commits_total")
        label = (
            "(b) queuefront, 1 message per vote"
            if pack == 1
            else f"(c) queuefront, packed <= {pack} per message"
        )
        return Run(
            label,
            sent.ok_per_s,
            n / persist_s,
            n / max(commits, 1),
            (sqs_after - sqs_before) / max(n, 1),
            errors(sent),
        )
    finally:
        stack.stop_all()
        await delete_queues(settings)
        await drop_db(name)


async def main_async(args: argparse.Namespace) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="qf-bench-ingest-"))
    sqs_url, sqs = await start_emulator(log_dir)
    base = {
        "QF_SQS_ENDPOINT_URL": sqs_url,
        "QF_REDIS_URL": REDIS_URL,
        "QF_ROUTES_FILE": "config/routes.toml",
    }
    results: dict[str, list[Run]] = {}
    try:
        for _ in range(args.repeat):
            runs = [await run_direct(args.seconds, args.concurrency, log_dir)]
            for pack in args.pack:
                runs.append(
                    await run_queuefront(
                        args.seconds, args.concurrency, pack, base, log_dir, args.batch_wait_s
                    )
                )
            for r in runs:
                results.setdefault(r.label, []).append(r)
    finally:
        sqs.stop()
    med = statistics.median
    load = os.getloadavg()[0]
    print(
        f"\ningest: votes for {args.seconds} s x {args.repeat} rounds (medians), concurrency "
        f"{args.concurrency}, batch {300} / max wait {args.batch_wait_s} s, "
        f"{os.cpu_count()} cores, load average after: {load:.2f}"
    )
    print(
        "| write path | accepted items/s | persisted items/s | rows/commit | SQS calls/item "
        "| errors |"
    )
    print("|---|---|---|---|---|---|")
    for label, runs in results.items():
        print(
            f"| {label} | {med(r.accepted_per_s for r in runs):.0f} | "
            f"{med(r.persisted_per_s for r in runs):.0f} | "
            f"{med(r.rows_per_commit for r in runs):.1f} | "
            f"{med(r.sqs_per_item for r in runs):.3f} | {sum(r.errors for r in runs)} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="of votes, per write path")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pack", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--batch-wait-s", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
