"""Idempotency keys seen from outside: one client's, one request's, one backend call."""

from __future__ import annotations

import asyncio
import signal
import uuid

import aiohttp
from redis.asyncio import Redis

from devstack import Stack, backend_calls, eventually, metric
from tests.integration.test_ingest import WRITER_FAST, db_rows


async def post(
    http: aiohttp.ClientSession, path: str, body: bytes, **headers: str
) -> tuple[int, bytes, bool]:
    """(status, body, replayed) of one POST."""
    async with http.post(path, data=body, headers=headers) as resp:
        return resp.status, await resp.read(), resp.headers.get("Idempotent-Replayed") == "true"


async def test_a_key_belongs_to_one_client_and_one_request(stack: Stack, backend_url: str) -> None:
    await stack.start_api(QF_AUTH_API_KEYS="alice-key,bob-key")
    await stack.start_worker()
    order = uuid.uuid4().hex
    path = f"/api/orders/{order}"
    key = uuid.uuid4().hex
    alice = {"X-Api-Key": "alice-key", "Idempotency-Key": key}
    bob = {"X-Api-Key": "bob-key", "Idempotency-Key": key}
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        first = await post(http, path, b'{"qty": 1}', **alice)
        assert first[0] == 200 and not first[2]
        # a retry: the same answer, replayed, no backend call
        again = await post(http, path, b'{"qty": 1}', **alice)
        assert again == (200, first[1], True)
        # another client with the same key: its own request, not alice's answer
        other = await post(http, path, b'{"qty": 1}', **bob)
        assert other[0] == 200 and not other[2]
        # the same key with another body: refused, nothing runs
        status, body, _ = await post(http, path, b'{"qty": 9}', **alice)
        assert status == 422
        assert b"idempotency_key_reused" in body
        status, _, _ = await post(http, f"{path}?x=1", b'{"qty": 1}', **alice)
        assert status == 422
        # the same key on another route: a request of its own there, neither 422 nor replay
        status, _, replayed = await post(http, "/api/login", b'{"qty": 1}', **alice)
        assert (status, replayed) == (200, False)
    await asyncio.sleep(0.3)
    assert await backend_calls(backend_url, f"POST /orders/{order}") == 2  # alice once, bob once


async def test_a_retry_after_a_504_never_calls_the_backend_again(
    stack: Stack, backend_url: str
) -> None:
    """The backend got the first try and did not answer within the 1 s window: it may
    have done the work, so the retry gets that outcome, not a second call."""
    await stack.start_api()
    await stack.start_worker()
    item = uuid.uuid4().hex
    path = f"/api/quick-high/{item}"  # a 1 s window
    headers = {"Idempotency-Key": uuid.uuid4().hex, "X-Demo-Delay-Ms": "1500"}
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        status, _, _ = await post(http, path, b"order", **headers)
        assert status == 504

        async def called() -> bool:
            return await backend_calls(backend_url, f"POST /quick-high/{item}") == 1

        await eventually(called, 5, "the backend call of the first try")
        await asyncio.sleep(0.5)  # the worker's outcome (its own 504) is stored by now
        for _ in range(2):
            status, body, replayed = await post(http, path, b"order", **headers)
            assert (status, replayed) == (504, True), body
        await asyncio.sleep(1.0)  # a second call would have reached the backend by now
    assert await backend_calls(backend_url, f"POST /quick-high/{item}") == 1


async def test_a_retry_while_the_first_call_has_no_outcome_re_submits_it(
    stack: Stack, backend_url: str
) -> None:
    """The worker of the first try dies in the middle of its backend call: no reply will
    ever come, and the call may have done the work. The retry after the 504 is the first
    try again (its request id), which the new worker does not call while it is claimed."""
    await stack.start_api()
    first = await stack.start_worker()
    item = uuid.uuid4().hex
    path = f"/api/quick-high/{item}"  # a 1 s window
    headers = {"Idempotency-Key": uuid.uuid4().hex, "X-Demo-Delay-Ms": "5000"}

    async def called() -> bool:
        return await backend_calls(backend_url, f"POST /quick-high/{item}") == 1

    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        try_one = asyncio.create_task(post(http, path, b"order", **headers))
        await eventually(called, 5, "the backend call of the first try")
        first.signal(signal.SIGKILL)  # before the backend answers or the window ends
        assert (await try_one)[0] == 504
        # the dead worker's long polls end unanswered first (the emulator would hand the
        # retry to one of them, and it would wait out its visibility timeout)
        await asyncio.sleep(stack.settings().receive_wait_s + 0.5)
        second = await stack.start_worker()
        status, body, replayed = await post(http, path, b"order", **headers)
        assert (status, replayed) == (504, False), body
        await asyncio.sleep(1.5)  # a second call would have reached the backend by now
    assert await backend_calls(backend_url, f"POST /quick-high/{item}") == 1
    # the retry did reach the new worker: as the first try, whose claim still stands
    elsewhere = await metric(
        second.metrics_url, "queuefront_worker_messages_total", outcome="in_progress_elsewhere"
    )
    assert elsewhere >= 1


async def test_anonymous_records_have_a_short_life(stack: Stack, redis: Redis) -> None:
    await stack.start_api(QF_IDEMPOTENCY_ANON_TTL_S="300")
    await stack.start_worker()
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        status, _, _ = await post(http, "/api/login", b"{}", **{"Idempotency-Key": "k1"})
        assert status == 200
    prefix = stack.settings().key_prefix
    names = [k async for k in redis.scan_iter(match=f"{prefix}idem:*")]
    assert len(names) == 1
    assert 0 < await redis.ttl(names[0]) <= 300


async def test_ingest_keys_are_per_client_and_per_body(db_stack: Stack) -> None:
    stack = db_stack
    await stack.start_api(QF_AUTH_API_KEYS="alice-key,bob-key")
    await stack.start_writer(**WRITER_FAST)
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    key = uuid.uuid4().hex
    vote = f"/api/polls/{poll}/votes"
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        ids = []
        for client in ("alice-key", "alice-key", "bob-key"):
            headers = {"X-Api-Key": client, "Idempotency-Key": key}
            async with http.post(vote, json={"choice": 1, "voter": "v"}, headers=headers) as r:
                assert r.status == 202
                ids.append((await r.json())["id"])
        assert ids[0] == ids[1] != ids[2]
        headers = {"X-Api-Key": "alice-key", "Idempotency-Key": key}
        async with http.post(vote, json={"choice": 2, "voter": "v"}, headers=headers) as r:
            assert r.status == 422
            assert (await r.json())["error"] == "idempotency_key_reused"

    async def two_rows() -> bool:
        return await db_rows(stack, poll) == 2

    await eventually(two_rows, 10, "alice's row and bob's row")
    await asyncio.sleep(0.5)
    assert await db_rows(stack, poll) == 2
