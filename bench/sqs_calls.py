"""Client CPU per SQS call: ``python -m bench.sqs_calls``.

The five calls a pod or worker makes per message — SendMessageBatch (10 entries),
ReceiveMessage (10 messages), ChangeMessageVisibilityBatch (10), DeleteMessageBatch (10)
and GetQueueAttributes — timed with ``bench.measure.self_cpu_s`` (this process's CPU only; the
emulator's is not counted) over ``--calls`` calls each (``--concurrency`` in flight, as in
a busy process; 1 gives sequential calls, whose CPU grows with the idle gaps between
them), for three clients side by side in the same run:

- ``aiobotocore``: aiobotocore as it comes (parameter validation on);
- ``no-validation``: the same with ``parameter_validation=False``;
- ``lean``: ``queuefront.sqswire`` (what ``open_client`` sets up with
  ``QF_SQS_DATA_PLANE=lean``).

Every repeat runs all three (in a rotating order, so none always runs first) on a
queue of its own; the table gives the median over the repeats, in microseconds of CPU per
call, and the load average before and after. Starts its own SQS emulator unless
``--endpoint`` is given. On a shared machine run it under ``flock``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvloop
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from bench.measure import self_cpu_s
from devstack import start_emulator
from queuefront.settings import Settings
from queuefront.sqs import RECEIVE_ATTRIBUTES, data_plane_of, open_client

Call = Callable[[str, Mapping[str, Any]], Awaitable[Any]]
VARIANTS = ("aiobotocore", "no-validation", "lean")
OPERATIONS = (
    "SendMessageBatch",
    "ReceiveMessage",
    "ChangeMessageVisibilityBatch",
    "DeleteMessageBatch",
    "GetQueueAttributes",
)
METHODS = {
    "SendMessageBatch": "send_message_batch",
    "ReceiveMessage": "receive_message",
    "DeleteMessageBatch": "delete_message_batch",
    "ChangeMessageVisibilityBatch": "change_message_visibility_batch",
    "GetQueueAttributes": "get_queue_attributes",
}
BATCH = 10
WARMUP_CALLS = 10
"""Calls of each operation before timing: the first ones load models and connect."""


def settings_for(endpoint: str) -> Settings:
    return Settings(sqs_endpoint_url=endpoint)


@asynccontextmanager
async def botocore_call(settings: Settings, *, validate: bool) -> AsyncIterator[Call]:
    """aiobotocore configured as ``open_client`` configures it, validation as asked."""
    config = AioConfig(
        max_pool_connections=50,
        connect_timeout=5.0,
        read_timeout=settings.receive_wait_s + 10,
        retries={"mode": "standard", "max_attempts": 3},
        parameter_validation=validate,
    )
    async with get_session().create_client(
        "sqs",
        region_name=settings.aws_region,
        endpoint_url=settings.sqs_endpoint_url,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=config,
    ) as client:

        async def call(operation: str, params: Mapping[str, Any]) -> Any:
            return await getattr(client, METHODS[operation])(**params)

        yield call


@asynccontextmanager
async def lean_call(settings: Settings) -> AsyncIterator[Call]:
    async with open_client(settings, data_plane="lean") as client:
        yield data_plane_of(client)


def opener(variant: str, settings: Settings) -> Any:
    if variant == "lean":
        return lean_call(settings)
    return botocore_call(settings, validate=variant == "aiobotocore")


async def timed(
    calls: list[tuple[str, dict[str, Any]]], call: Call, concurrency: int
) -> tuple[float, list[Any]]:
    """Seconds of this process's CPU for ``calls`` (``concurrency`` in flight), and the
    responses in order."""
    out: list[Any] = [None] * len(calls)
    todo = iter(enumerate(calls))

    async def worker() -> None:
        for i, (operation, params) in todo:
            out[i] = await call(operation, params)

    started = self_cpu_s()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return self_cpu_s() - started, out


def entries_of(handles: list[str], timeout_s: int | None = None) -> list[dict[str, Any]]:
    if timeout_s is None:
        return [{"Id": str(j), "ReceiptHandle": h} for j, h in enumerate(handles)]
    return [
        {"Id": str(j), "ReceiptHandle": h, "VisibilityTimeout": timeout_s}
        for j, h in enumerate(handles)
    ]


async def one_variant(
    call: Call, url: str, n: int, body: str, concurrency: int, round_calls: int
) -> dict[str, float]:
    """Microseconds of CPU per call of each operation: ``n`` calls each, in rounds of
    ``round_calls`` sends, receives, visibility changes, deletes and attribute reads, so
    the queue stays short (the emulator slows down with a long one)."""
    cpu = dict.fromkeys(OPERATIONS, 0.0)
    count = dict.fromkeys(OPERATIONS, 0)
    send = (
        "SendMessageBatch",
        {"QueueUrl": url, "Entries": [{"Id": str(i), "MessageBody": body} for i in range(BATCH)]},
    )
    receive = (
        "ReceiveMessage",
        {
            "QueueUrl": url,
            "MaxNumberOfMessages": BATCH,
            "WaitTimeSeconds": 0,
            "AttributeNames": list(RECEIVE_ATTRIBUTES),
        },
    )
    attrs = (
        "GetQueueAttributes",
        {"QueueUrl": url, "AttributeNames": ["ApproximateNumberOfMessages"]},
    )

    def note(operation: str, seconds: float, calls: int) -> None:
        cpu[operation] += seconds
        count[operation] += calls

    rounds = max(1, n // round_calls)
    for r in range(rounds + 1):  # round 0 warms up (models, connections) and is not counted
        k = WARMUP_CALLS if r == 0 else round_calls
        seconds, sent = await timed([send] * k, call, concurrency)
        assert all(len(x.get("Successful", [])) == BATCH for x in sent), "a send was refused"
        if r:
            note("SendMessageBatch", seconds, k)
        seconds, received = await timed([receive] * k, call, concurrency)
        handles = [m["ReceiptHandle"] for x in received for m in x.get("Messages", [])]
        if r:
            note("ReceiveMessage", seconds, k)
            got = len(handles) / k
            assert got >= BATCH - 0.5, f"receives brought {got:.1f} messages each, not {BATCH}"
        groups = [handles[i : i + BATCH] for i in range(0, len(handles), BATCH)]
        params = [{"QueueUrl": url, "Entries": entries_of(g, 120)} for g in groups]
        seconds, changed = await timed(
            [("ChangeMessageVisibilityBatch", p) for p in params], call, concurrency
        )
        assert not any(x.get("Failed") for x in changed), "a visibility change was refused"
        if r:
            note("ChangeMessageVisibilityBatch", seconds, len(groups))
        params = [{"QueueUrl": url, "Entries": entries_of(g)} for g in groups]
        seconds, deleted = await timed(
            [("DeleteMessageBatch", p) for p in params], call, concurrency
        )
        assert not any(x.get("Failed") for x in deleted), "a delete was refused"
        if r:
            note("DeleteMessageBatch", seconds, len(groups))
        seconds, _ = await timed([attrs] * k, call, concurrency)
        if r:
            note("GetQueueAttributes", seconds, k)
    return {op: cpu[op] / count[op] * 1e6 for op in OPERATIONS}


async def run(
    endpoint: str, n: int, repeats: int, body_bytes: int, concurrency: int, round_calls: int
) -> None:
    settings = settings_for(endpoint)
    body = ("x" * body_bytes)[:body_bytes]
    samples: dict[str, dict[str, list[float]]] = {
        v: {op: [] for op in OPERATIONS} for v in VARIANTS
    }
    load_before = os.getloadavg()
    async with get_session().create_client(
        "sqs",
        region_name=settings.aws_region,
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    ) as control:
        for r in range(repeats):
            order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
            for variant in order:
                name = f"bench-calls-{uuid.uuid4().hex[:8]}"
                url = (
                    await control.create_queue(
                        QueueName=name, Attributes={"VisibilityTimeout": "120"}
                    )
                )["QueueUrl"]
                try:
                    async with opener(variant, settings) as call:
                        got = await one_variant(call, url, n, body, concurrency, round_calls)
                finally:
                    await control.delete_queue(QueueUrl=url)
                for op, us in got.items():
                    samples[variant][op].append(us)
                print(
                    f"repeat {r + 1}/{repeats} {variant:>13}: "
                    + ", ".join(f"{op} {us:.0f}" for op, us in got.items()),
                    flush=True,
                )
    load_after = os.getloadavg()
    print()
    print(
        f"client CPU per call, µs: median (min-max) of {repeats} repeats of {n} calls "
        f"each, {concurrency} in flight; bodies of {body_bytes} B, batches of {BATCH}"
    )
    print(f"load average before {fmt_load(load_before)}, after {fmt_load(load_after)}")
    print()
    print("| call | aiobotocore | no validation | lean | lean vs aiobotocore |")
    print("|---|---|---|---|---|")
    for op in OPERATIONS:
        med = {v: statistics.median(samples[v][op]) for v in VARIANTS}
        spread = {v: (min(samples[v][op]), max(samples[v][op])) for v in VARIANTS}
        cells = " | ".join(
            f"{med[v]:.0f} ({spread[v][0]:.0f}-{spread[v][1]:.0f})" for v in VARIANTS
        )
        print(f"| {op} | {cells} | {med['aiobotocore'] / med['lean']:.1f}x less |")


def fmt_load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


async def main_async(args: argparse.Namespace) -> None:
    sizes = (args.calls, args.repeats, args.body_bytes, args.concurrency, args.round_calls)
    if args.endpoint:
        await run(args.endpoint, *sizes)
        return
    url, proc = await start_emulator(Path(tempfile.mkdtemp(prefix="qf-bench-")))
    try:
        await run(url, *sizes)
    finally:
        proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls of each operation")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--body-bytes", type=int, default=600, help="size of each message")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight")
    parser.add_argument(
        "--round-calls", type=int, default=40, help="calls of each operation per round"
    )
    parser.add_argument("--endpoint", default="", help="an SQS endpoint (default: own emulator)")
    args = parser.parse_args()
    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
