"""Dependencies that stop, freeze or restart — for real: the emulator is sent SIGSTOP, a
Redis of the test's own is frozen, killed and restarted. Every request gets a clear
answer in time, and no computed reply is lost."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from devstack import (
    Proc,
    Stack,
    backend_calls,
    eventually,
    metric,
    new_stack_env,
    start_emulator,
    start_redis,
)
from queuefront.keys import Keys
from queuefront.queues import delete_queues, ensure_queues

SQS_ANSWER_S = 3.0
"""Longest a request may wait for a 503 when SQS does not answer (the issue's bound)."""


@pytest.fixture
async def own_sqs(base_env: dict[str, str], log_dir: Path) -> AsyncIterator[tuple[Stack, Proc]]:
    """A stack on an emulator of its own, which the test may freeze."""
    url, proc = await start_emulator(log_dir)
    stack = Stack(env=new_stack_env({**base_env, "QF_SQS_ENDPOINT_URL": url}), log_dir=log_dir)
    await ensure_queues(stack.settings(), wait_s=10)
    try:
        yield stack, proc
    finally:
        proc.signal(signal.SIGCONT)
        stack.stop_all()
        proc.stop()


@pytest.fixture
async def own_redis(stack: Stack, log_dir: Path) -> AsyncIterator[Proc]:
    """The stack's processes use a Redis of their own, which the test may stop."""
    url, proc = await start_redis(log_dir)
    stack.env["QF_REDIS_URL"] = url
    try:
        yield proc
    finally:
        proc.signal(signal.SIGCONT)
        stack.stop_all()
        proc.stop()


async def test_frozen_sqs_gives_503_within_3_s_and_200_once_it_thaws(
    own_sqs: tuple[Stack, Proc], backend_url: str
) -> None:
    stack, emulator = own_sqs
    await stack.start_api()
    worker = await stack.start_worker()
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        async with http.get("/api/items/before") as resp:
            assert resp.status == 200
        emulator.signal(signal.SIGSTOP)
        try:

            async def call(i: int) -> tuple[int, float, dict[str, object]]:
                started = time.monotonic()
                async with http.get(f"/api/items/frozen-{i}") as resp:
                    return resp.status, time.monotonic() - started, await resp.json()

            results = await asyncio.gather(*(call(i) for i in range(20)))
        finally:
            emulator.signal(signal.SIGCONT)
        for status, elapsed, body in results:
            assert status == 503, body
            assert body["error"] == "unavailable" and body["dependency"] == "sqs", body
            assert elapsed <= SQS_ANSWER_S, elapsed
        # thawed: served again (the worker's own polls recover by themselves)
        deadline = time.monotonic() + 15
        while True:
            async with http.get("/api/items/after") as resp:
                if resp.status == 200:
                    break
            assert time.monotonic() < deadline, "not served again after the thaw"
            await asyncio.sleep(0.2)

    # the sends the api gave up on were read by the emulator once it thawed: each met the
    # answer the api stored when it gave up, and none reached the backend
    async def settled() -> bool:
        seen = await metric(
            worker.metrics_url, "queuefront_worker_messages_total", outcome="duplicate"
        )
        return seen >= 20

    await eventually(settled, 15, "the 20 given-up sends met their stored answers")
    calls = [await backend_calls(backend_url, f"GET /items/frozen-{i}") for i in range(20)]
    assert calls == [0] * 20
    await delete_queues(stack.settings())


async def test_redis_restart_while_requests_wait_loses_no_reply(
    stack: Stack, own_redis: Proc, log_dir: Path
) -> None:
    """50 requests wait on a 3 s backend call; Redis goes away for ~2 s just as the
    replies are computed and comes back empty: the worker keeps each reply and retries
    until it is stored, the pod re-subscribes and recovers: 50 x 200."""
    await stack.start_api()
    await stack.start_worker(QF_WORKER_CONCURRENCY="64")
    port = own_redis.port
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:

        async def call(i: int) -> int:
            headers = {"X-Demo-Delay-Ms": "3000"}
            async with http.get(f"/api/items/restart-{i}", headers=headers) as resp:
                await resp.read()
                return resp.status

        calls = [asyncio.create_task(call(i)) for i in range(50)]
        await asyncio.sleep(2.0)
        own_redis.popen.kill()  # as a crash: no goodbye to the clients
        own_redis.popen.wait()
        await asyncio.sleep(2.0)
        _, restarted = await start_redis(log_dir, port=port)
        try:
            statuses = await asyncio.wait_for(asyncio.gather(*calls), 25)
        finally:
            restarted.stop()
    assert statuses == [200] * 50, Counter(statuses)


@pytest.mark.parametrize("fault", ["frozen", "down"])
async def test_redis_slow_or_down_gives_503_never_500(
    stack: Stack, own_redis: Proc, fault: str
) -> None:
    """Cached, idempotent and rate-limited routes all need Redis: with it frozen (every
    pooled connection hangs, the pool runs dry) or gone, each answers 503 in about a
    second, and the log says so once per interval instead of once per request."""
    api = await stack.start_api(
        QF_ANON_RATE_LIMIT_RPS="1000", QF_REDIS_MAX_CONNECTIONS="4", QF_LOG_LEVEL="INFO"
    )
    if fault == "frozen":
        own_redis.signal(signal.SIGSTOP)
    else:
        own_redis.popen.kill()
        own_redis.popen.wait()
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:

        async def call(method: str, path: str, headers: dict[str, str]) -> tuple[int, float]:
            started = time.monotonic()
            async with http.request(method, path, headers=headers) as resp:
                body = await resp.json()
                assert resp.status != 503 or body["error"] == "unavailable", body
                return resp.status, time.monotonic() - started

        requests = (
            [("GET", f"/api/products/SN-{i}", {}) for i in range(30)]
            + [("POST", "/api/login", {"Idempotency-Key": f"k-{i}"}) for i in range(10)]
            + [("GET", f"/api/items/{i}", {}) for i in range(10)]
        )
        results = await asyncio.gather(*(call(*r) for r in requests))
    assert Counter(s for s, _ in results) == {503: len(requests)}
    assert max(elapsed for _, elapsed in results) < 3.0
    log = api.log()
    assert "Traceback" not in log
    assert log.count('"event": "redis unavailable"') <= 3, log[-2000:]


async def test_a_pod_whose_listener_cannot_subscribe_is_unready(
    stack: Stack, own_redis: Proc
) -> None:
    """Redis answers, but the pod's reply subscription cannot be made (SUBSCRIBE is
    refused): every proxied request of that pod would end in 504, so it reports itself
    unready (naming redis-pubsub) until the subscription is back."""
    await stack.start_api()
    admin = Redis.from_url(f"redis://127.0.0.1:{own_redis.port}/0")
    name = Keys(stack.settings().key_prefix).subscriber_name(stack.settings().pod_id)
    try:
        await admin.execute_command("ACL", "SETUSER", "default", "-subscribe")
        for client in await admin.client_list():
            if client.get("name") == name:
                await admin.client_kill_filter(_id=client["id"])

        async with aiohttp.ClientSession() as http:

            async def unready() -> bool:
                async with http.get(stack.api_readyz_url) as resp:
                    return resp.status == 503 and "redis-pubsub" in (await resp.json())["down"]

            await eventually(unready, 5, "readyz names redis-pubsub")
            await admin.execute_command("ACL", "SETUSER", "default", "+subscribe")

            async def ready() -> bool:
                async with http.get(stack.api_readyz_url) as resp:
                    return resp.status == 200

            await eventually(ready, 10, "ready again once it can subscribe")
    finally:
        await admin.aclose()
