"""bench.closedloop drives a real server with wrk: what the SLA benchmark's capacity
figures, the throughput table and the ingest table rest on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bench import closedloop
from devstack import free_port
from examples.legacy_backend import init_app


@pytest.fixture
async def backend() -> AsyncIterator[int]:
    """The demo backend, 4 workers x 20 ms: 200 answers/s at most."""
    if closedloop.wrk_path() is None:
        pytest.fail(closedloop.INSTALL_HINT)  # missing is a failure, not a skip
    runner = web.AppRunner(init_app(latency_ms=20, concurrency=4), shutdown_timeout=1.0)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


async def test_closed_loop_measures_what_the_server_sustains(backend: int) -> None:
    result = await asyncio.to_thread(
        closedloop.run,
        f"http://127.0.0.1:{backend}",
        seconds=1,
        connections=4,
        lua=closedloop.path_script("/c/{i}"),
    )
    # 4 workers x 20 ms = 200/s at most; well above half of it on a busy machine too
    assert 80 <= result.ok_per_s <= 210
    assert result.non_2xx == 0 and result.socket_errors == 0
    assert result.p50_ms >= 20  # every answer waited its 20 ms
