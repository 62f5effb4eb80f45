"""The shared backend limit (``QF_BACKEND_MAX_CONCURRENCY``) with worker processes: it holds
across workers whose own slots add up to more; a worker killed holding leases stops
counting within the lease TTL; a message that cannot get a lease while its window fits a
call is answered 503 backend_busy at once and never sent.

Each test has a demo backend of its own (its ``max_in_flight`` is the test's alone). The
api's predictive admission is off: what is refused is refused by the workers."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devstack import Stack, backend_calls, eventually, metric, start_backend
from workers.priority.leases import LEASE_TTL_S

LIMIT = 5
SLOTS = 8
"""Each worker's own slots: two workers could make 16 calls at once without the limit."""
SERVICE_MS = 300
HELD = "queuefront_backend_leases_held"


@pytest.fixture
async def own_backend(stack: Stack, log_dir: Path) -> AsyncIterator[str]:
    url, proc = await start_backend(
        log_dir, QF_DEMO_LATENCY_MS=str(SERVICE_MS), QF_DEMO_CONCURRENCY="64"
    )
    stack.env["QF_BACKEND_URL"] = url
    try:
        yield url
    finally:
        stack.stop_all()
        proc.stop()


async def _stats(backend: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{backend}/__stats") as resp:
        stats: dict[str, Any] = await resp.json()
        return stats


async def _get(
    http: aiohttp.ClientSession, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], float]:
    """(status, JSON body, seconds taken)."""
    started = time.monotonic()
    async with http.get(path, headers=headers or {}) as resp:
        body = await resp.json(content_type=None)
        return resp.status, body, time.monotonic() - started


def _limited(**extra: str) -> dict[str, str]:
    return {
        "QF_WORKER_CONCURRENCY": str(SLOTS),
        "QF_BACKEND_MAX_CONCURRENCY": str(LIMIT),
        **extra,
    }


async def test_two_workers_never_make_more_calls_than_the_limit(
    stack: Stack, own_backend: str
) -> None:
    """Two workers of 8 slots, limit 5, 40 requests at once on a 300 ms backend: the
    backend never holds more than 5 calls, and every request is answered 200, once."""
    await stack.start_api(QF_ADMISSION_PREDICTIVE="false")
    workers = [await stack.start_worker(**_limited()) for _ in range(2)]
    tag = uuid.uuid4().hex[:8]
    paths = [f"/api/items/{tag}-{i}" for i in range(40)]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        results = await asyncio.gather(*(_get(http, p) for p in paths))
    assert [status for status, *_ in results] == [200] * len(paths), results
    stats = await _stats(own_backend)
    assert stats["max_in_flight"] == LIMIT, stats  # held, and used
    for path in paths:
        assert await backend_calls(own_backend, f"GET {path.removeprefix('/api')}") == 1
    # both workers called (the limit is shared, not one worker's), and gave every lease back
    for worker in workers:
        assert await metric(worker.metrics_url, "queuefront_worker_messages_total", outcome="ok")
        assert await metric(worker.metrics_url, HELD) == 0


async def test_a_killed_workers_leases_free_within_the_ttl(stack: Stack, own_backend: str) -> None:
    """Worker A holds all 5 leases (five 4 s calls on the `slow` route, 8 s window) and is
    killed with SIGKILL. Worker B, started beside it, serves the 10 requests sent after the
    kill once A's leases expire (within the lease TTL), all 200, never more than 5 calls at
    the backend. A's own five were called once each and are never called again."""
    await stack.start_api(QF_ADMISSION_PREDICTIVE="false")
    a = await stack.start_worker(**_limited())
    tag = uuid.uuid4().hex[:8]
    # the slow route's 8 s window: A's five end in 504s sooner than on a 20 s route
    slow = [f"/api/slow/{tag}-{i}" for i in range(LIMIT)]
    quick = [f"/api/items/{tag}-quick-{i}" for i in range(10)]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        held = [asyncio.create_task(_get(http, p, {"X-Demo-Delay-Ms": "4000"})) for p in slow]

        async def all_held() -> bool:
            return await metric(a.metrics_url, HELD) == LIMIT

        await eventually(all_held, 10, "worker A holds every lease")
        b = await stack.start_worker(**_limited())
        a.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        # a long poll A had out may still take a message for the dead process (the queue
        # hides it for its visibility timeout): sent once that poll has ended
        await asyncio.sleep(float(stack.env["QF_RECEIVE_WAIT_S"]) + 0.5)
        results = await asyncio.gather(*(_get(http, p) for p in quick))
        served_within = time.monotonic() - killed_at
        cut_short = await asyncio.gather(*held)
    assert [status for status, *_ in results] == [200] * len(quick), results
    assert served_within < LEASE_TTL_S + 3.0, served_within
    assert (await _stats(own_backend))["max_in_flight"] <= LIMIT
    for path in quick:
        assert await backend_calls(own_backend, f"GET {path.removeprefix('/api')}") == 1
    # A died mid-call: its requests time out, and none is called a second time
    assert [status for status, *_ in cut_short] == [504] * LIMIT, cut_short
    for path in slow:
        assert await backend_calls(own_backend, f"GET {path.removeprefix('/api')}") == 1
    assert await metric(b.metrics_url, HELD) == 0


async def test_a_message_that_gets_no_lease_in_its_window_is_refused_uncalled(
    stack: Stack, own_backend: str
) -> None:
    """Limit 1, held by a 6 s call on the `slow` route: requests on the `brief` route (3 s
    window) wait for the lease while their window could fit a call, then get 503
    backend_busy before their deadline (never a 504); the backend never sees them and
    their messages are deleted."""
    await stack.start_api(QF_ADMISSION_PREDICTIVE="false")
    worker = await stack.start_worker(
        QF_WORKER_CONCURRENCY=str(SLOTS), QF_BACKEND_MAX_CONCURRENCY="1"
    )
    tag = uuid.uuid4().hex[:8]
    waiting = [f"/api/brief/{tag}-{i}" for i in range(3)]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        holder = asyncio.create_task(
            _get(http, f"/api/slow/{tag}-holder", {"X-Demo-Delay-Ms": "6000"})
        )

        async def held() -> bool:
            return await metric(worker.metrics_url, HELD) == 1

        await eventually(held, 10, "the only lease held")
        refused = await asyncio.gather(*(_get(http, p) for p in waiting))
        assert (await holder)[0] == 200
    for status, body, elapsed in refused:
        assert status == 503, (status, body)
        assert body["error"] == "backend_busy", body
        assert elapsed < 3.0, elapsed  # before the window ends: the api's 504 never came
    for path in waiting:
        assert await backend_calls(own_backend, f"GET {path.removeprefix('/api')}") == 0, path
    refusals = "queuefront_backend_lease_refusals_total"
    assert await metric(worker.metrics_url, refusals, reason="limit") == len(waiting)

    async def all_deleted() -> bool:
        return await stack.in_flight() == 0

    await eventually(all_deleted, 5.0, "the refused messages deleted, not left in flight")
