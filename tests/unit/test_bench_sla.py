"""The SLA benchmark's own machinery: the open-loop generator's scheduling and accounting
(real sockets against a small local aiohttp server), PASS/FAIL classification, and the
demo backend's collapse mode. A few seconds in all.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from bench.openloop import Failure, OpenLoopResult, open_loop
from bench.sla_stats import LevelSummary, overload_targets, summarize
from devstack import free_port
from examples.legacy_backend import DemoSettings, init_app, service_time_s

Serve = Callable[[web.Application], Awaitable[int]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Starts apps on free loopback ports; stops them after the test."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> int:
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return port

    yield start
    for runner in runners:
        await runner.cleanup()


async def mixed(request: web.Request) -> web.StreamResponse:
    """Request i gets: 0 → 503, 1 → 200 after 300 ms, 2 → 200, 3 → dropped; i = 5 hangs."""
    i = int(request.match_info["i"])
    if i == 5:
        await asyncio.sleep(5)
    kind = i % 4
    if kind == 0:
        return web.json_response({"error": "overloaded"}, status=503)
    if kind == 1:
        await asyncio.sleep(0.3)
    if kind == 3:
        assert request.transport is not None
        request.transport.close()  # no answer at all
        await asyncio.sleep(1)
    return web.json_response({"i": i})


async def test_open_loop_sends_on_schedule_and_accounts_for_every_request(serve: Serve) -> None:
    app = web.Application()
    app.router.add_get("/r/{i}", mixed)
    port = await serve(app)
    n, window_s, timeout_s = 40, 0.4, 1.0
    started = time.monotonic()
    result = await open_loop(
        "127.0.0.1", port, "/r/{i}", n=n, window_s=window_s, timeout_s=timeout_s
    )
    assert time.monotonic() - started < window_s + timeout_s + 1.0  # bounded
    # every request resolved, each with the outcome its index asked for
    expected = {"503": 10, "200": 19, "reset": 10, "timeout": 1}  # 5 is the hung one
    assert dict(result.outcomes()) == expected
    assert result.status[5] == Failure.TIMEOUT
    # open loop: slow (300 ms) and hung answers never delayed the next request's send
    assert all(not math.isnan(s) for s in result.sent)
    assert max(result.send_lag_s()) < 0.15
    assert result.scheduled(n - 1) == pytest.approx(window_s * (n - 1) / n)
    # one connection per request in flight: several at once, and reused when free
    assert 5 <= result.connections_opened < n
    # latency runs from the scheduled time: a slow answer is at least 300 ms
    slow = [result.latency_s(i) for i in range(1, n, 4) if i != 5]
    assert min(slow) >= 0.3
    assert result.end[5] - result.scheduled(5) == pytest.approx(timeout_s, abs=0.1)


async def test_refused_connections_are_connect_errors() -> None:
    port = free_port()  # nothing listens there
    result = await open_loop("127.0.0.1", port, "/x", n=5, window_s=0.1, timeout_s=1.0)
    assert dict(result.outcomes()) == {"connect_error": 5}


async def test_framing_chunked_and_connection_close(serve: Serve) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b"a" * 10, b"b" * 3000):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def closing(request: web.Request) -> web.Response:
        return web.Response(text="bye", headers={"Connection": "close"})

    app = web.Application()
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/close", closing)
    port = await serve(app)
    # one at a time, so that every answer must be framed right for the connection's reuse:
    # 200 ms apart, since an answer slower than the spacing (a loaded machine) would open a
    # second connection through no fault of the framing
    kept = await open_loop("127.0.0.1", port, "/chunked", n=10, window_s=2.0, timeout_s=2)
    assert dict(kept.outcomes()) == {"200": 10}
    assert kept.connections_opened == 1
    closed = await open_loop("127.0.0.1", port, "/close", n=5, window_s=0.25, timeout_s=2)
    assert dict(closed.outcomes()) == {"200": 5}
    assert closed.connections_opened == 5


def fake_result(statuses: list[int], ends: list[float], window_s: float = 1.0) -> OpenLoopResult:
    n = len(statuses)
    sched = [i * window_s / n for i in range(n)]
    return OpenLoopResult(
        n, window_s, 30.0, array("d", sched), array("d", ends), array("i", statuses)
    )


def test_pass_needs_every_request_2xx_and_the_last_answer_inside_the_window() -> None:
    ok = summarize("queued", 60, 20.0, fake_result([200, 200, 204], [0.1, 0.5, 0.9]))
    assert ok.passed and ok.verdict == "PASS"
    # one 503 among them fails the level
    one_503 = summarize("queued", 60, 20.0, fake_result([200, 503, 200], [0.1, 0.5, 0.9]))
    assert not one_503.passed
    # so does a request that never got an answer
    reset = summarize("queued", 60, 20.0, fake_result([200, Failure.RESET, 200], [0.1, 0.5, 0.9]))
    assert not reset.passed and reset.others() == "reset: 1"
    # the window is the sending window (1 s) plus the reply window (20 s)
    inside = summarize("old", 60, 20.0, fake_result([200, 200], [0.1, 20.9]))
    late = summarize("old", 60, 20.0, fake_result([200, 200], [0.1, 21.1]))
    assert inside.passed and inside.last_answer_s == pytest.approx(20.9)
    assert not late.passed
    assert late.p99_ms == pytest.approx((21.1 - 0.5) * 1000)


def test_overload_targets() -> None:
    statuses = [200] * 90 + [503] * 9 + [504]
    ends = [i / 100 + (0.05 if s == 503 else 0.02) for i, s in enumerate(statuses)]
    row = summarize("queued", 6000, 20.0, fake_result(statuses, ends))
    met = {t.name: t.met for t in overload_targets(row, capacity_per_s=95.0)}
    assert all(met.values()), met
    # goodput 90 / 95 % of a capacity of 95/s: met; of 110/s: not
    assert not overload_targets(row, capacity_per_s=110.0)[0].met
    slow = summarize(
        "queued", 6000, 20.0, fake_result([503] * 10, [i / 10 + 0.5 for i in range(10)])
    )
    assert {t.name: t.met for t in overload_targets(slow, 1.0)} == {
        "goodput ≥ 90 % of capacity": False,
        "no 500/502 answers": True,
        "every request answered (no connection errors or client time-outs)": True,
        "503s answered within 100 ms (p99)": False,
        "504s ≤ 1 % of requests": True,
    }


def test_level_summary_json_has_the_verdict() -> None:
    row = summarize("cached", 60, 20.0, fake_result([200], [0.01]))
    assert isinstance(row, LevelSummary)
    assert row.to_json()["passed"] is True


def test_service_time_grows_past_the_knee() -> None:
    assert service_time_s(0.03, 10, knee=0) == 0.03  # collapse mode off
    assert service_time_s(0.03, 32, knee=32) == 0.03
    assert service_time_s(0.03, 64, knee=32) == pytest.approx(0.06)


async def test_demo_backend_collapses_past_its_limits(serve: Serve) -> None:
    settings = DemoSettings(latency_ms=100, concurrency=1, collapse_knee=1, error_limit=3)
    port = await serve(init_app(settings=settings))
    result = await open_loop("127.0.0.1", port, "/x/{i}", n=6, window_s=0.015, timeout_s=5)
    # 3 held at once, the other 3 refused at once
    assert dict(result.outcomes()) == {"200": 3, "503": 3}
    assert max(result.end[i] for i in range(6) if result.status[i] == 503) < 0.1
    # one worker: 100 ms alone, then 200 ms (2 in flight, knee 1), then 100 ms again
    assert max(result.end) >= 0.38


async def test_demo_backend_without_collapse_settings_only_queues(serve: Serve) -> None:
    port = await serve(init_app(latency_ms=100, concurrency=1))
    result = await open_loop("127.0.0.1", port, "/x/{i}", n=6, window_s=0.015, timeout_s=5)
    assert dict(result.outcomes()) == {"200": 6}
    # a plain line: 6 rounds of 100 ms on one worker, no thrashing
    assert 0.59 <= max(result.end) < 0.75


def test_goodput_counts_the_time_a_backlog_took_to_drain() -> None:
    inside = summarize("queued", 600, 20.0, fake_result([200] * 10, [0.95] * 10))
    assert inside.goodput_per_s == pytest.approx(10.0)  # 10 answers within the 1 s window
    drained = summarize("queued", 600, 20.0, fake_result([200] * 10, [4.0] * 10))
    assert drained.goodput_per_s == pytest.approx(2.5)  # the same 10, the last at 4 s
    refused = summarize("queued", 600, 20.0, fake_result([503] * 10, [0.1] * 10))
    assert refused.goodput_per_s == 0.0


async def test_an_answer_that_is_not_http_counts_as_a_reset() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"garbage\r\n\r\n")
        await writer.drain()
        await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await open_loop("127.0.0.1", port, "/x", n=3, window_s=0.1, timeout_s=2)
    assert dict(result.outcomes()) == {"reset": 3}


async def test_a_server_that_never_accepts_gives_connect_timeouts() -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepted: once its queue is full, SYNs are dropped
        port = listener.getsockname()[1]
        started = time.monotonic()
        result = await open_loop("127.0.0.1", port, "/x", n=6, window_s=0.1, timeout_s=0.5)
    assert time.monotonic() - started < 0.1 + 0.5 + 1.0
    outcomes = result.outcomes()
    assert set(outcomes) <= {"timeout", "connect_timeout"}, outcomes
    assert outcomes["connect_timeout"] >= 3
