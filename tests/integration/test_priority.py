"""Strict priority in the worker and admission control in the api."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp

from devstack import Stack, metric
from queuefront.sqs import QueueOps, open_client


async def wait_backlog(ops: QueueOps, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while await ops.backlog() < count:
        assert time.monotonic() < deadline, f"{ops.name} never reached {count} messages"
        await asyncio.sleep(0.05)


async def test_high_priority_overtakes_queued_normal_work(stack: Stack) -> None:
    """Worker stopped: 50 normal then 5 high requests; started with 4 slots, it finishes
    the 5 high ones before the normal ones that were still queued."""
    concurrency = 4
    await stack.start_api()
    finished: list[tuple[float, str]] = []

    async def call(http: aiohttp.ClientSession, method: str, path: str, kind: str) -> None:
        async with http.request(method, path, headers={"X-Demo-Delay-Ms": "50"}) as resp:
            assert resp.status == 200, await resp.text()
        finished.append((time.monotonic(), kind))

    settings = stack.settings()
    async with (
        aiohttp.ClientSession(base_url=stack.api_url) as http,
        open_client(settings) as sqs,
    ):
        normal = await QueueOps.open(sqs, settings.queue_normal, 0)
        high = await QueueOps.open(sqs, settings.queue_high, 0)
        tasks = [
            asyncio.create_task(call(http, "GET", f"/api/items/{i}", "normal")) for i in range(50)
        ]
        await wait_backlog(normal, 50)
        tasks += [asyncio.create_task(call(http, "POST", "/api/login", "high")) for _ in range(5)]
        await wait_backlog(high, 5)
        await stack.start_worker(QF_WORKER_CONCURRENCY=str(concurrency))
        await asyncio.gather(*tasks)

    order = [kind for _, kind in sorted(finished)]
    last_high = max(i for i, kind in enumerate(order) if kind == "high")
    normals_before = order[:last_high].count("normal")
    # at most the normal work already in the worker's slots may finish first
    assert normals_before <= concurrency, order


async def test_admission_rejects_normal_work_while_high_backlog_is_at_threshold(
    stack: Stack,
) -> None:
    # the threshold rule alone: with no worker running, the predictive rule would refuse
    # everything once messages stand in the queue (tests/integration/test_overload.py)
    await stack.start_api(
        QF_ADMISSION_THRESHOLD="5",
        QF_ADMISSION_WAIT_S="1",
        QF_BACKLOG_POLL_S="0.2",
        QF_ADMISSION_PREDICTIVE="false",
    )
    settings = stack.settings()
    async with (
        aiohttp.ClientSession(base_url=stack.api_url) as http,
        open_client(settings) as sqs,
    ):
        high = await QueueOps.open(sqs, settings.queue_high, 0)
        await asyncio.gather(*(high.send('{"filler": true}') for _ in range(5)))
        await asyncio.sleep(0.6)  # the pod reads the backlog every 0.2 s

        started = time.monotonic()
        async with http.get("/api/items/1") as resp:
            elapsed = time.monotonic() - started
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "1"
            body = await resp.json()
        assert body["error"] == "overloaded"
        assert 0.9 <= elapsed < 2.0  # it waited QF_ADMISSION_WAIT_S for the backlog to drop

        # high-priority work is never held back by admission (no worker: it times out)
        async with http.post("/api/quick-high/1") as resp:
            assert resp.status == 504

        # a request that arrives while the backlog is high is admitted once it drops
        waiting = asyncio.create_task(http.get("/api/quick/2"))
        await asyncio.sleep(0.3)
        # drain it (PurgeQueue may take up to 60 s, on SQS as on emulators)
        while messages := await high.receive(10, 0):
            await asyncio.gather(*(high.delete(m.receipt_handle) for m in messages))
        resp = await waiting
        assert resp.status == 504  # admitted and enqueued; no worker runs, so no reply
        resp.release()
        await high.close()
    rejected = await metric(stack.api_metrics_url, "queuefront_admission_rejections_total")
    assert rejected == 1


async def test_a_worker_holds_at_most_its_slots_plus_its_prefetch(
    stack: Stack, backend_url: str
) -> None:
    """32 slots: two receive loops per queue, 20 messages received ahead. With 100 slow
    requests queued the worker holds 52 less the two high-queue long polls' reservations
    (one message each) — loops asking at once never overshoot — and never has more than
    32 backend calls in flight."""
    await stack.start_api()
    await stack.start_worker(QF_WORKER_CONCURRENCY="32")
    settings = stack.settings()
    async with (
        aiohttp.ClientSession(base_url=stack.api_url) as http,
        aiohttp.ClientSession() as probe,
        open_client(settings) as sqs,
    ):
        normal = await QueueOps.open(sqs, settings.queue_normal, 0)
        tag = uuid.uuid4().hex[:8]

        async def call(i: int) -> int:
            headers = {"X-Demo-Delay-Ms": "2500"}
            async with http.get(f"/api/items/{tag}-{i}", headers=headers) as r:
                return r.status

        calls = [asyncio.create_task(call(i)) for i in range(100)]
        held: list[int] = []
        in_flight: list[int] = []
        for _ in range(8):  # within the first 2.5 s backend call
            await asyncio.sleep(0.25)
            attrs = await normal.attributes("ApproximateNumberOfMessagesNotVisible")
            held.append(int(attrs["ApproximateNumberOfMessagesNotVisible"]))
            async with probe.get(f"{backend_url}/__stats") as r:
                in_flight.append(int((await r.json())["in_flight"]))
        assert 32 + 20 - 2 <= max(held) <= 32 + 20, held
        assert max(in_flight) <= 32, in_flight
        assert await asyncio.wait_for(asyncio.gather(*calls), 20) == [200] * 100
        await normal.close()
