"""Admission under overload: refuse at once what could not be answered in its window,
keep high-priority work flowing, bound what a pod holds."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from devstack import Stack, eventually, metric
from queuefront.sqs import QueueOps, open_client

TIGHT_WINDOW_S = 4.0  # the `tight` route of tests/routes.toml
SERVICE_MS = 200


async def test_predicted_wait_past_the_window_is_refused_while_high_work_gets_through(
    stack: Stack,
) -> None:
    """Two worker slots at 200 ms drain 10 requests/s; a 4 s window leaves room for
    about 0.8 x 4 s - 0.2 s = 3 s of wait, so of 90 requests sent at once about 30 are
    admitted — and every admitted one is answered in time — while the rest get 503 at
    once with a Retry-After. A high-priority request sent into the middle of it is
    admitted and answered."""
    await stack.start_api(QF_BACKLOG_POLL_S="0.2")
    await stack.start_worker(QF_WORKER_CONCURRENCY="2")
    slow = {"X-Demo-Delay-Ms": str(SERVICE_MS)}
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        # the workers' reports carry a measured service time once they have worked
        for i in range(4):
            async with http.get(f"/api/tight/warm-{i}", headers=slow) as resp:
                assert resp.status == 200
        await asyncio.sleep(1.5)

        async def call(path: str, method: str = "GET") -> tuple[int, float, str | None]:
            started = time.monotonic()
            async with http.request(method, path, headers=slow) as resp:
                await resp.read()
                return resp.status, time.monotonic() - started, resp.headers.get("Retry-After")

        burst = [asyncio.create_task(call(f"/api/tight/{i}")) for i in range(90)]
        await asyncio.sleep(0.3)
        high = await call("/api/login", "POST")
        results = await asyncio.gather(*burst)

    assert high[0] == 200, high
    statuses = [s for s, _, _ in results]
    admitted = statuses.count(200)
    refused = [r for r in results if r[0] == 503]
    assert statuses.count(504) == 0, statuses
    assert admitted + len(refused) == 90, statuses
    assert 15 <= admitted <= 55, statuses
    assert len(refused) >= 30, statuses
    # refused at once, with a Retry-After derived from the estimate
    assert max(elapsed for _, elapsed, _ in refused) < 1.0
    assert all(retry is not None and int(retry) >= 1 for _, _, retry in refused)
    rejected = await metric(
        stack.api_metrics_url, "queuefront_admission_rejections_total", reason="predicted_wait"
    )
    assert rejected == len(refused)


async def test_no_worker_draining_means_503_not_a_wait_for_504(stack: Stack) -> None:
    """Messages stand in the queue and no worker reports: requests are refused at once
    instead of waiting out their window."""
    await stack.start_api(QF_BACKLOG_POLL_S="0.2")
    settings = stack.settings()
    async with (
        aiohttp.ClientSession(base_url=stack.api_url) as http,
        open_client(settings) as sqs,
    ):
        first = [asyncio.create_task(http.get(f"/api/quick/{i}")) for i in range(5)]
        normal = await QueueOps.open(sqs, settings.queue_normal, 0)

        async def standing() -> bool:
            return await normal.backlog() >= 5

        await eventually(standing, 10, "the requests stand in the queue")
        await asyncio.sleep(1.0)  # for several of the pod's polls
        started = time.monotonic()
        async with http.get("/api/items/late") as resp:
            assert resp.status == 503
            assert "no worker" in (await resp.json())["message"]
        assert time.monotonic() - started < 0.5
        for task in first:
            (await task).release()
        await normal.close()


async def test_pending_replies_are_bounded_per_pod(stack: Stack) -> None:
    """Past QF_MAX_PENDING_REPLIES waiting requests, the pod answers 503 at once."""
    await stack.start_api(QF_MAX_PENDING_REPLIES="5", QF_ADMISSION_PREDICTIVE="false")
    await stack.start_worker()
    slow = {"X-Demo-Delay-Ms": "1500"}
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:

        async def call(i: int) -> int:
            async with http.get(f"/api/items/{i}", headers=slow) as resp:
                await resp.read()
                return resp.status

        waiting = [asyncio.create_task(call(i)) for i in range(5)]
        await asyncio.sleep(0.5)
        started = time.monotonic()
        async with http.get("/api/items/one-too-many", headers=slow) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "1"
        assert time.monotonic() - started < 0.5
        assert await asyncio.gather(*waiting) == [200] * 5
    rejected = await metric(
        stack.api_metrics_url, "queuefront_admission_rejections_total", reason="pending_limit"
    )
    assert rejected == 1


async def test_a_burst_after_an_idle_spell_does_not_refuse_high_work(stack: Stack) -> None:
    """A fresh pod and worker (no completion ever reported), a burst that saturates the
    worker's 4 slots with 1.5 s calls, and high requests sent before the first call ends:
    the drain rate is not measured yet, not zero, so they are admitted and answered — not
    refused with "no worker is draining the queue" (the compose priority check got five
    such 503s for sixty high requests)."""
    await stack.start_api(QF_BACKLOG_POLL_S="0.2")
    await stack.start_worker(QF_WORKER_CONCURRENCY="4")
    slow = {"X-Demo-Delay-Ms": "1500"}
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:

        async def call(method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
            async with http.request(method, path, headers=headers) as r:
                return r.status, await r.text()

        normals = [
            asyncio.create_task(call("GET", f"/api/items/idle-{i}", slow)) for i in range(24)
        ]
        await asyncio.sleep(0.8)  # > 2 polls of 0.2 s: saturated; no call has ended yet
        highs = []
        for i in range(4):
            highs.append(asyncio.create_task(call("POST", "/api/login", {"X-Idle": str(i)})))
            await asyncio.sleep(0.05)
        answered = await asyncio.wait_for(asyncio.gather(*highs), 15)
        assert [status for status, _ in answered] == [200] * 4, answered
        assert all(status == 200 for status, _ in await asyncio.gather(*normals))
