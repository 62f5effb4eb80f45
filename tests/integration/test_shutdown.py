"""SIGTERM: the worker stops receiving, finishes or releases what it holds, and exits."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import aiohttp

from devstack import Stack, backend_calls, eventually, metric
from queuefront.queues import ensure_queues
from queuefront.sqs import QueueOps, open_client


async def test_sigterm_drains_and_leaves_nothing_invisible(stack: Stack) -> None:
    await stack.start_api()
    worker = await stack.start_worker(QF_WORKER_CONCURRENCY="4")
    settings = stack.settings()
    async with (
        aiohttp.ClientSession(base_url=stack.api_url) as http,
        open_client(settings) as sqs,
    ):
        normal = await QueueOps.open(sqs, settings.queue_normal, 0)

        async def call(i: int) -> int:
            async with http.get(f"/api/items/{i}", headers={"X-Demo-Delay-Ms": "800"}) as r:
                return r.status

        calls = [asyncio.create_task(call(i)) for i in range(20)]
        await asyncio.sleep(0.5)  # the worker holds 4 in its slots, the rest are queued
        started = time.monotonic()
        worker.signal(15)
        code = await asyncio.to_thread(worker.popen.wait, 25)
        drain_s = time.monotonic() - started
        assert code == 0, worker.log()[-2000:]
        assert drain_s < 25

        attrs = await normal.attributes(
            "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessages"
        )
        assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0", attrs
        done = [c for c in calls if c.done()]
        assert len(done) >= 4 and all(c.result() == 200 for c in done)  # in-hand work finished

        # what it did not start is still there for the next worker, immediately
        await stack.start_worker(QF_WORKER_CONCURRENCY="8")
        statuses = await asyncio.wait_for(asyncio.gather(*calls), 15)
        assert statuses == [200] * 20
        await normal.close()
    assert "worker stopped" in worker.log()


async def test_a_stopping_worker_loses_none_of_the_messages_it_took_ahead(
    stack: Stack, backend_url: str
) -> None:
    """Three slots, four requests: three run, the fourth waits in the worker's prefetch
    while its receive loop long-polls the emptied queue; then SIGTERM. Every request
    still gets its answer (from this worker or the next), each from one backend call,
    and nothing reaches the DLQ. Given back while the worker's own long poll was still
    out, the fourth was taken again by that poll and given back a second time: on the
    emulator a receive and a release each add one to the receive count, so that was
    its third receive, and the queue's redrive sent it to the DLQ unanswered (what a
    restart of the compose stack's only worker cost on a busy machine)."""
    await stack.start_api()
    worker = await stack.start_worker(QF_WORKER_CONCURRENCY="3", QF_RECEIVE_WAIT_S="5")
    settings = stack.settings()
    tag = uuid.uuid4().hex[:8]
    async with (
        aiohttp.ClientSession(base_url=stack.api_url) as http,
        open_client(settings) as sqs,
    ):
        normal = await QueueOps.open(sqs, settings.queue_normal, 0)
        dlq = await QueueOps.open(sqs, settings.dlq_name(settings.queue_normal), 0)

        async def call(i: int) -> int:
            path = f"/api/items/{tag}-{i}"
            async with http.get(path, headers={"X-Demo-Delay-Ms": "3000"}) as resp:
                return resp.status

        calls = [asyncio.create_task(call(i)) for i in range(4)]

        async def all_taken() -> bool:
            attrs = await normal.attributes("ApproximateNumberOfMessagesNotVisible")
            return attrs["ApproximateNumberOfMessagesNotVisible"] == "4"

        await eventually(all_taken, 10, "three requests running, the fourth taken ahead")
        await asyncio.sleep(1)  # the loop found the queue empty: its long poll is out
        worker.signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.popen.wait, 25)
        assert code == 0, worker.log()[-2000:]
        dead = await dlq.attributes("ApproximateNumberOfMessages")
        if dead["ApproximateNumberOfMessages"] != "0":
            for c in calls:
                c.cancel()
        assert dead["ApproximateNumberOfMessages"] == "0", "a request went to the DLQ"
        await stack.start_worker()  # takes whatever the first one gave back
        statuses = await asyncio.wait_for(asyncio.gather(*calls), 25)
        await normal.close()
        await dlq.close()
    assert statuses == [200] * 4
    for i in range(4):
        assert await backend_calls(backend_url, f"GET /items/{tag}-{i}") == 1


async def test_visibility_is_extended_for_work_that_outlives_half_the_timeout(
    stack: Stack, backend_url: str
) -> None:
    """Queue visibility 2 s, backend call 3.5 s: without extension the message would
    reappear mid-call and reach the backend twice."""
    settings = stack.settings().model_copy(update={"visibility_timeout_s": 2})
    await ensure_queues(settings)  # existing queue: its attributes are brought up to date
    await stack.start_api()
    worker = await stack.start_worker(QF_WORKER_CONCURRENCY="4")
    key = f"slow-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        async with http.get(f"/api/slow/{key}", headers={"X-Demo-Delay-Ms": "3500"}) as resp:
            assert resp.status == 200
        await asyncio.sleep(2.5)  # a redelivery would have reached the backend by now
        async with http.get(f"{backend_url}/__stats") as resp:
            calls = (await resp.json())["calls"]
    assert calls[f"GET /slow/{key}"] == 1
    assert await metric(worker.metrics_url, "queuefront_visibility_extensions_total") >= 1
