"""SIGTERM: the worker stops receiving, finishes or releases what it holds, and exits."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from queuefront.sqs import QueueOps, open_client
from tests.harness import Stack


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
