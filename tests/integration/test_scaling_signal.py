"""The api's scaling signal end to end: a running api writes EMF lines on stdout (what the
awslogs driver ships) that carry the real queues' backlog and the real workers' drain, and
writes none unless told to."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from devstack import Stack, eventually, metric
from devstack.processes import Proc
from queuefront.sqs import QueueOps, open_client
from tests.unit.test_scaling_signal import assert_emf


def lines(proc: Proc) -> list[dict[str, Any]]:
    """The EMF documents in the process's output (its other lines are its logs)."""
    out = []
    for line in proc.log().splitlines():
        if '"_aws"' in line:
            out.append(assert_emf(line))
    return out


async def test_the_api_writes_the_workers_drain_and_the_queues_backlog(stack: Stack) -> None:
    api = await stack.start_api(
        QF_SCALING_SIGNAL_INTERVAL_S="0.3",
        QF_BACKLOG_POLL_S="0.2",
        QF_SCALING_SIGNAL_DIMENSIONS="Stack=itest",
    )
    settings = stack.settings()
    # a worker drains real requests: its reports give the drain rate and capacity
    worker = await stack.start_worker(QF_WORKER_CONCURRENCY="4")
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        for i in range(8):
            async with http.get(f"/api/items/{i}") as resp:
                assert resp.status == 200

    async def drain_seen() -> bool:
        docs = lines(api)
        return bool(docs) and docs[-1].get("DrainCapacity", 0) > 0

    await eventually(drain_seen, 20, "a line with the worker's capacity")
    last = lines(api)[-1]
    assert last["Stack"] == "itest"
    assert last["_aws"]["CloudWatchMetrics"][0]["Namespace"] == settings.scaling_signal_namespace
    # the worker's 4 slots over a backend call of ~20 ms: far more than 4 a second
    assert last["DrainCapacity"] > 4

    # without the worker, messages stand in the queue: the lines carry its backlog, the
    # same figure the pod's own /metrics shows
    worker.stop()
    async with open_client(settings) as sqs:
        normal = await QueueOps.open(sqs, settings.queue_normal, 0)
        await asyncio.gather(*(normal.send(json.dumps({"n": i})) for i in range(6)))

    async def backlog_written() -> bool:
        return any(doc.get("QueueBacklog") == 6 for doc in lines(api))

    await eventually(backlog_written, 15, "a line with the 6 messages of the normal queue")
    gauge = await metric(
        stack.api_metrics_url, "queuefront_queue_backlog_messages", queue=settings.queue_normal
    )
    assert gauge == 6


async def test_no_line_unless_asked(stack: Stack) -> None:
    api = await stack.start_api(QF_BACKLOG_POLL_S="0.2")
    await asyncio.sleep(1.0)
    assert lines(api) == []
