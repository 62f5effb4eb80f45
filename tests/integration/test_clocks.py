"""Hosts whose wall clocks disagree: deadlines, drain reports and cache expiry are judged
on Redis's clock (``queuefront.clock``), not on the clock of whoever wrote them.

A worker or the api pods run under libfaketime (Debian's libfaketime, which ``make
test-deps`` puts in the venv): their wall clock really is skewed, as their own metric
shows.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from devstack import Stack, eventually, metric

LIBFAKETIME_PATHS = (
    Path(sys.prefix) / "lib" / "faketime" / "libfaketime.so.1",
    *sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1")),
)
SLOTS = 2
SERVICE_MS = 1000
SWR_TTL_S = 2.0  # the `swr` route of tests/routes.toml (ttl 2 s, stale for 30 s more)


def libfaketime() -> Path:
    """The preload library; missing is a failure, not a skip (``make test-deps``)."""
    for path in LIBFAKETIME_PATHS:
        if path.exists():
            return path
    pytest.fail(
        "libfaketime not found: `make test-deps` installs it from Debian's libfaketime "
        f"package into {LIBFAKETIME_PATHS[0]} (or `apt-get install faketime`)"
    )


def skewed(offset_s: int) -> dict[str, str]:
    """Environment that runs a process with its wall clock ``offset_s`` off."""
    return {"LD_PRELOAD": str(libfaketime()), "FAKETIME": f"{offset_s:+d}s"}


@pytest.mark.parametrize(
    ("skewed_process", "offset_s"),
    [("worker", -10), ("worker", 30), ("api", -10), ("api", 30)],
    ids=["worker-10s-behind", "worker-30s-ahead", "api-10s-behind", "api-30s-ahead"],
)
async def test_a_process_with_a_skewed_clock_still_answers(
    stack: Stack, skewed_process: str, offset_s: int
) -> None:
    """A worker behind: its drain reports looked old to every pod, and once the backlog
    stood every request was refused with "no worker is draining the queue" (a pod ahead:
    the same). A worker ahead by more than the window, or a pod behind: every message was
    dropped as expired. Cache entries expired on the wrong clock. Now requests are
    answered, the reports keep admission open, and a cached answer is fresh for its TTL
    and no longer."""
    api_env = skewed(offset_s) if skewed_process == "api" else {}
    worker_env = skewed(offset_s) if skewed_process == "worker" else {}
    _, worker = await asyncio.gather(
        stack.start_api(QF_BACKLOG_POLL_S="0.2", QF_POD_ID=f"a-{uuid.uuid4().hex[:6]}", **api_env),
        stack.start_worker(QF_WORKER_CONCURRENCY=str(SLOTS), **worker_env),
    )
    first_api, first_metrics = stack.api_url, stack.api_metrics_url
    await stack.start_api(
        QF_BACKLOG_POLL_S="0.2", QF_POD_ID=f"b-{uuid.uuid4().hex[:6]}", **api_env
    )

    # the skew is real inside the process, and measured; the others run on the host's clock
    offsets = {
        "worker": await metric(worker.metrics_url, "queuefront_clock_offset_seconds"),
        "api": await metric(first_metrics, "queuefront_clock_offset_seconds"),
    }
    for process, offset in offsets.items():
        expected = offset_s if process == skewed_process else 0
        assert abs(offset - expected) < 1.0, offsets
    assert '"clock synced with redis"' in worker.log()

    slow = {"X-Demo-Delay-Ms": str(SERVICE_MS)}
    async with aiohttp.ClientSession() as http:

        async def call(i: int) -> tuple[int, str]:
            async with http.get(f"{first_api}/api/slow/skew-{i}", headers=slow) as resp:
                return resp.status, await resp.text()

        # the worker holds 4 (2 running, 2 received ahead): 2 stand in the queue for a
        # second, for several polls, so admission rests on the worker's drain reports —
        # then more requests into it (8 s of window for 4 s of work)
        burst = [asyncio.create_task(call(i)) for i in range(6)]
        await asyncio.sleep(0.7)
        late = [asyncio.create_task(call(100 + i)) for i in range(2)]
        answers = await asyncio.gather(*burst, *late)
        assert [status for status, _ in answers] == [200] * 8, answers

        # a cached answer the worker stored: fresh for its TTL on every pod, stale (served
        # while refreshed) after it
        path = f"/api/swr/skew-{uuid.uuid4().hex[:8]}"
        async with http.get(first_api + path) as resp:
            assert (resp.status, resp.headers["X-Cache"]) == (200, "MISS")
        async with http.get(stack.api_url + path) as resp:  # the other pod: from Redis
            assert (resp.status, resp.headers["X-Cache"]) == (200, "HIT")
        await asyncio.sleep(SWR_TTL_S + 0.5)
        async with http.get(stack.api_url + path) as resp:
            assert (resp.status, resp.headers["X-Cache"]) == (200, "STALE")

    assert await metric(worker.metrics_url, "queuefront_expired_messages_total") == 0


@pytest.mark.parametrize(
    ("skewed_process", "offset_s"),
    [("writer", 30), ("api", -10)],
    ids=["writer-30s-ahead", "api-10s-behind"],
)
async def test_the_ingest_lag_is_measured_on_the_shared_clock(
    db_stack: Stack, skewed_process: str, offset_s: int
) -> None:
    """The api stamps an item's ``received_at``, the writer measures the lag to its commit:
    with either clock off, every item looked that much late (and the lag alert fired)."""
    stack = db_stack
    api_env = skewed(offset_s) if skewed_process == "api" else {}
    writer_env = skewed(offset_s) if skewed_process == "writer" else {}
    _, writer = await asyncio.gather(
        stack.start_api(**api_env),
        stack.start_writer(QF_BATCH_MAX_WAIT_S="0.3", **writer_env),
    )
    skewed_metrics = writer.metrics_url if skewed_process == "writer" else stack.api_metrics_url
    offset = await metric(skewed_metrics, "queuefront_clock_offset_seconds")
    assert abs(offset - offset_s) < 1.0, offset

    poll = f"skew-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        for i in range(20):
            body = {"choice": i % 3, "voter": f"viewer-{i}"}
            async with http.post(f"/api/polls/{poll}/votes", json=body) as resp:
                assert resp.status == 202, await resp.text()

    async def stored() -> bool:
        return await metric(writer.metrics_url, "queuefront_ingest_rows_inserted_total") == 20

    await eventually(stored, 20, "20 votes stored")
    lag_s = await metric(writer.metrics_url, "queuefront_ingest_lag_seconds_sum")
    assert await metric(writer.metrics_url, "queuefront_ingest_lag_seconds_count") == 20
    assert lag_s / 20 < 5.0, lag_s
