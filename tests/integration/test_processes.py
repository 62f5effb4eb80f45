"""Several api processes on one port (QF_API_PROCESSES=2), run for real: the kernel spreads
connections over them, each has its own reply subscription, the supervisor's probe port
answers for all of them, replaces the one that dies and stops them together."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from devstack import Proc, Stack, eventually, free_port, metric, spawn
from queuefront.keys import Keys


def started(api: Proc) -> list[dict[str, Any]]:
    """The supervisor's "api process started" lines: slot, pod_id, pid, probe_socket."""
    lines = []
    for line in api.log().splitlines():
        if line.startswith("{") and '"api process started"' in line:
            lines.append(json.loads(line))
    return lines


def running(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


async def child_metric(child: dict[str, Any], name: str, **labels: str) -> float:
    """A metric of one process, from its own probe socket (what the supervisor sums)."""
    connector = aiohttp.UnixConnector(path=child["probe_socket"])
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get("http://api/metrics") as resp,
    ):
        text = await resp.text()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def get_many(url: str, paths: list[str], headers: dict[str, str] | None = None) -> list[int]:
    """Each request on a new connection, so the kernel picks a process for every one;
    0 for a request whose connection broke."""
    limit = asyncio.Semaphore(16)

    async def one(http: aiohttp.ClientSession, path: str) -> int:
        async with limit:
            try:
                async with http.get(path, headers=headers) as resp:
                    await resp.read()
                    return resp.status
            except aiohttp.ClientError:
                return 0

    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(base_url=url, connector=connector) as http:
        return list(await asyncio.gather(*(one(http, p) for p in paths)))


async def probe(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text()


async def subscriber_names(redis: Redis) -> set[str]:
    return {c.get("name", "") for c in await redis.client_list()}


async def test_two_processes_share_the_port_and_the_probe_port_sums_them(
    stack: Stack, redis: Redis
) -> None:
    await stack.start_worker()
    api = await stack.start_api(QF_API_PROCESSES="2")
    children = started(api)
    base = stack.env["QF_POD_ID"]
    assert [c["pod_id"] for c in children] == [f"{base}-1", f"{base}-2"]

    # each its own subscriber connection on its own reply channel
    keys = Keys(stack.env["QF_KEY_PREFIX"])
    names = await subscriber_names(redis)
    assert {keys.subscriber_name(c["pod_id"]) for c in children} <= names
    channels = [keys.reply_channel(c["pod_id"]) for c in children]
    assert dict(await redis.pubsub_numsub(*channels)) == {c.encode(): 1 for c in channels}

    sent = 120
    statuses = await get_many(stack.api_url, [f"/api/items/{i}" for i in range(sent)])
    assert statuses == [200] * sent

    # both served requests, and each got its replies on its own channel
    per_child = [
        await child_metric(c, "queuefront_http_requests_total", route="item") for c in children
    ]
    replies = [await child_metric(c, "queuefront_replies_total", outcome="ok") for c in children]
    assert all(n > 0 for n in per_child), per_child
    assert per_child == replies
    assert sum(per_child) == sent

    # one scrape target: the sum over the processes
    url = stack.api_metrics_url
    assert await metric(url, "queuefront_http_requests_total", route="item") == sent
    assert await metric(url, "queuefront_replies_total", outcome="ok") == sent
    assert await metric(url, "queuefront_http_request_duration_seconds_count", route="item") == sent
    assert await metric(url, "queuefront_pending_replies") == 0
    # every log line of a process names its pod
    for line in api.log().splitlines():
        if line.startswith("{") and '"api configured"' in line:
            assert json.loads(line)["pod_id"] in {c["pod_id"] for c in children}
    assert all('"pod_id"' in line for line in api.log().splitlines() if line.startswith("{"))


async def test_a_killed_process_is_reported_then_replaced(stack: Stack, redis: Redis) -> None:
    await stack.start_worker()
    api = await stack.start_api(QF_API_PROCESSES="2")
    victim, survivor = started(api)
    health, ready = f"http://127.0.0.1:{stack.api_probe_port}/healthz", stack.api_readyz_url
    served_before = 40
    assert await get_many(stack.api_url, [f"/api/items/a{i}" for i in range(served_before)]) == [
        200
    ] * served_before

    # requests waiting on both processes when one dies
    slow = asyncio.create_task(
        get_many(
            stack.api_url, [f"/api/slow/s{i}" for i in range(12)], {"X-Demo-Delay-Ms": "1500"}
        )
    )

    async def both_waiting() -> bool:
        pending = [await child_metric(c, "queuefront_pending_replies") for c in (victim, survivor)]
        return all(p > 0 for p in pending)

    await eventually(both_waiting, 5, "requests waiting in both processes")
    os.kill(victim["pid"], signal.SIGKILL)

    async def reported() -> bool:
        (live_status, live_body), (ready_status, ready_body) = await asyncio.gather(
            probe(health), probe(ready)
        )
        both = (live_status, ready_status) == (503, 503)
        return both and "api-1" in live_body and "api-1" in ready_body

    await eventually(reported, 3, "/healthz and /readyz name the dead process")
    # meanwhile the other process takes every new connection
    assert await get_many(stack.api_url, [f"/api/items/b{i}" for i in range(10)]) == [200] * 10

    async def replaced() -> bool:
        return (await probe(health))[0] == 200 and (await probe(ready))[0] == 200

    await eventually(replaced, 20, "the process replaced and ready")
    children = started(api)
    assert len(children) == 3
    new = children[2]
    assert new["slot"] == 1 and new["pod_id"] == f"{stack.env['QF_POD_ID']}-3"
    keys = Keys(stack.env["QF_KEY_PREFIX"])
    assert keys.subscriber_name(new["pod_id"]) in await subscriber_names(redis)
    assert keys.subscriber_name(victim["pod_id"]) not in await subscriber_names(redis)

    statuses = await asyncio.wait_for(slow, 15)
    assert statuses.count(200) >= 1  # the survivor's share was answered
    served_after = 60
    assert await get_many(stack.api_url, [f"/api/items/c{i}" for i in range(served_after)]) == [
        200
    ] * served_after
    assert await child_metric(new, "queuefront_http_requests_total", route="item") > 0

    url = stack.api_metrics_url
    assert await metric(url, "queuefront_api_process_restarts_total", reason="exited") == 1
    # the dead process's counts stay in the sum (no counter goes back) ...
    total = served_before + 10 + served_after
    assert await metric(url, "queuefront_http_requests_total", route="item") == total
    # ... and what it held when it died leaves the gauges
    assert await metric(url, "queuefront_pending_replies") == 0


async def test_sigterm_drains_every_process(stack: Stack) -> None:
    await stack.start_worker()
    api = await stack.start_api(QF_API_PROCESSES="2")
    children = started(api)
    calls = asyncio.create_task(
        get_many(
            stack.api_url, [f"/api/slow/d{i}" for i in range(16)], {"X-Demo-Delay-Ms": "1500"}
        )
    )

    async def both_waiting() -> bool:
        pending = [await child_metric(c, "queuefront_pending_replies") for c in children]
        return all(p > 0 for p in pending)

    await eventually(both_waiting, 5, "requests waiting in both processes")
    began = time.monotonic()
    api.signal(signal.SIGTERM)
    code = await asyncio.to_thread(api.popen.wait, 20)
    assert code == 0, api.log()[-3000:]
    assert await asyncio.wait_for(calls, 5) == [200] * 16  # every waiting request answered
    assert time.monotonic() - began < 10
    for child in children:
        assert not running(child["pid"]), "a process outlived its supervisor"
    assert '"clean": true' in api.log()


async def test_processes_that_cannot_start_fail_the_supervisor(stack: Stack) -> None:
    """The public port is held by a socket without SO_REUSEPORT: no process can bind it,
    and the supervisor must end with an error instead of restarting them forever.

    Whatever the machine's load: each process finds the port taken before it starts
    anything else, so none ever answers its probe socket (which the supervisor would
    count as a start that succeeded) or connects to a dependency."""
    port, probe_port = free_port(), free_port()
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", port))
        holder.listen()
        env = stack.settings_env(
            QF_HTTP_PORT=str(port), QF_METRICS_PORT=str(probe_port), QF_API_PROCESSES="2"
        )
        api = spawn("api", [sys.executable, "-m", "service"], env, stack.log_dir)
        stack.procs.append(api)
        try:
            code = await asyncio.to_thread(api.popen.wait, 60)
        except Exception:
            pytest.fail(f"the supervisor kept running:\n{api.log()[-3000:]}")
    log = api.log()
    assert code == 1, log[-3000:]
    assert "did not start 3 times in a row" in log
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    refused = [e for e in events if e["event"] == "cannot bind the public port: stopping"]
    assert len(refused) >= 3 and all(e["port"] == port for e in refused), log[-3000:]
    kinds = {e["event"] for e in events}
    assert "api process up" not in kinds, "a process that could not bind looked alive"
    assert "reply channel subscribed" not in kinds, "a process started before binding"
    for child in started(api):
        assert not running(child["pid"])


async def test_a_process_that_stops_answering_is_replaced(stack: Stack) -> None:
    """SIGSTOP: the process is there but answers nothing, like a blocked event loop."""
    api = await stack.start_api(QF_API_PROCESSES="2")
    stuck = started(api)[0]
    health = f"http://127.0.0.1:{stack.api_probe_port}/healthz"
    os.kill(stuck["pid"], signal.SIGSTOP)
    try:

        async def reported() -> bool:
            status, body = await probe(health)
            return status == 503 and "api-1: no answer" in body

        await eventually(reported, 5, "/healthz names the process that does not answer")
        # detection takes 6-10 s; the stuck process is then told to drain, and is killed
        # if it has not after its drain window (21 s here) + 5 s
        await eventually(lambda: replaced(api), 45, "a new process in slot 1")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{api.log()[-4000:]}") from exc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stuck["pid"], signal.SIGCONT)

    async def healthy() -> bool:
        return (await probe(health))[0] == 200

    await eventually(healthy, 20, "every process alive again")
    assert not running(stuck["pid"])
    restarts = await metric(
        stack.api_metrics_url, "queuefront_api_process_restarts_total", reason="not_alive"
    )
    assert restarts == 1


async def replaced(api: Proc) -> bool:
    return [c["slot"] for c in started(api)] == [1, 2, 1]


async def test_processes_stop_when_their_supervisor_is_killed(stack: Stack) -> None:
    """SIGKILL leaves no one to pass a signal on: the children must notice and go, or
    they would keep the public port."""
    api = await stack.start_api(QF_API_PROCESSES="2")
    children = started(api)
    api.popen.kill()
    api.popen.wait()

    async def gone() -> bool:
        return not any(running(c["pid"]) for c in children)

    await eventually(gone, 15, "the children stopped by themselves")
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", stack.api_port)) != 0, "the port is still served"
    # what only the supervisor's exit would have removed (the next one wipes it too)
    shutil.rmtree(Path(tempfile.gettempdir()) / f"queuefront-api-{stack.api_probe_port}")


READINESS_SCRIPT = """
import asyncio, json, socket, sys
import aiohttp
from aiohttp import web
from queuefront.settings import Settings
from service.app import init_app
from service.context import PUBLIC_SOCKET

async def main() -> None:
    public = socket.socket()
    public.bind(("127.0.0.1", 0))  # bound, as service.__main__ binds it, not listening
    app = init_app(Settings())
    app[PUBLIC_SOCKET] = public
    runner = web.AppRunner(app)
    await runner.setup()  # the pod's clients and its probe server, no public site yet
    url = f"http://127.0.0.1:{sys.argv[1]}/readyz"
    seen = []
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.get(url) as resp:
                seen.append([resp.status, await resp.json()])
            public.listen()  # what the public site's start does
    await runner.cleanup()
    print(json.dumps(seen))

asyncio.run(main())
"""


async def test_a_pod_is_ready_only_once_its_public_port_listens(stack: Stack) -> None:
    """The probe server starts with the pod's clients, before the public site: a pod that
    said it was ready then refused connections on its public port for a moment (the
    tests' launcher, which waits on ``/readyz``, met "connection refused")."""
    probe_port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        READINESS_SCRIPT,
        str(probe_port),
        env={**os.environ, **stack.settings_env(QF_METRICS_PORT=str(probe_port))},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-3000:]
    (before, before_body), (after, _) = json.loads(out.decode().splitlines()[-1])
    assert before == 503 and "public-port" in before_body["down"], before_body
    assert after == 200
