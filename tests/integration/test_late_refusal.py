"""A worker answers 503 backend_slow at once, without a backend call, a message whose window
is shorter than a call takes now (workers/priority/pace.py); it never does so cold, and it
calls again once the backend has recovered.

The backend "turns slow" for every request of a phase: each carries the same
``X-Demo-Delay-Ms``. The api's predictive admission is off, so what is refused is refused
by the worker (admission would refuse the same requests earlier, on the same service time
reported by the workers: tests/integration/test_admission.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp

from devstack import Stack, backend_calls, eventually, metric
from devstack.processes import Proc
from queuefront.sqs import QueueOps, open_client

SLOTS = 8
SLOW_MS = 5000
"""The slow backend's service time: within the `slow` route's 8 s window, beyond the
`tight` route's 4 s and the `brief` route's 3 s."""
SLOW = {"X-Demo-Delay-Ms": str(SLOW_MS)}
TIGHT_WINDOW_S = 4.0
FAST_REFUSAL_S = TIGHT_WINDOW_S / 2
"""A refusal comes within the message's queue wait: well before the window ends."""
RECOVERED_WITHIN_S = 25.0
"""After the spell: the slow calls leave the 5 s window, the last mean (5 s) turns stale
5 s and one mean later, and a probe goes through: ~10 s."""
REFUSED = "queuefront_worker_refused_late_total"


async def _get(
    http: aiohttp.ClientSession, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], float, str | None]:
    """(status, JSON body of an error, seconds taken, Retry-After)."""
    started = time.monotonic()
    async with http.get(path, headers=headers or {}) as resp:
        body = await resp.read()
        elapsed = time.monotonic() - started
        parsed: dict[str, Any] = {"body": body.decode(errors="replace")}
        if resp.content_type == "application/json" and resp.status >= 500:
            parsed = await resp.json()
        return resp.status, parsed, elapsed, resp.headers.get("Retry-After")


async def _start(stack: Stack) -> Proc:
    await stack.start_api(QF_ADMISSION_PREDICTIVE="false")
    return await stack.start_worker(QF_WORKER_CONCURRENCY=str(SLOTS))


async def _slow_spell(http: aiohttp.ClientSession, tag: str) -> None:
    """Two calls that take the slow service time and fit their window: the worker has
    measured the backend at 5 s a call."""
    first = await asyncio.gather(
        *(_get(http, f"/api/slow/{tag}-first-{i}", SLOW) for i in range(2))
    )
    assert [s for s, *_ in first] == [200, 200], first


async def _not_visible(stack: Stack) -> int:
    settings = stack.settings()
    async with open_client(settings) as sqs:
        ops = await QueueOps.open(sqs, settings.queue_normal, 0)
        try:
            attrs = await ops.attributes("ApproximateNumberOfMessagesNotVisible")
        finally:
            await ops.close()
    return int(attrs["ApproximateNumberOfMessagesNotVisible"])


async def test_a_slow_backend_gets_no_call_for_a_window_it_cannot_fit(
    stack: Stack, backend_url: str
) -> None:
    """Measured at 5 s a call: requests with a 4 s window get 503 backend_slow within their
    queue wait and the backend never sees them; one with an 8 s window is still called and
    answered; the refused messages are deleted."""
    worker = await _start(stack)
    tag = uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        await _slow_spell(http, tag)
        late = [f"/api/tight/{tag}-late-{i}" for i in range(6)]
        fits = f"/api/slow/{tag}-fits"
        results = await asyncio.gather(
            _get(http, fits, SLOW), *(_get(http, path, SLOW) for path in late)
        )

    fit, refused = results[0], results[1:]
    assert fit[0] == 200, fit  # 8 s left of its window holds a 5 s call: never refused
    for status, body, elapsed, retry_after in refused:
        assert status == 503, (status, body)
        assert body["error"] == "backend_slow", body
        assert body["service_s"] >= SLOW_MS / 1000 * 0.9, body
        assert elapsed < FAST_REFUSAL_S, f"refused after {elapsed:.2f} s"
        assert retry_after is not None and int(retry_after) >= 1
    for path in late:
        assert await backend_calls(backend_url, f"GET {path.removeprefix('/api')}") == 0, path
    assert await backend_calls(backend_url, f"GET {fits.removeprefix('/api')}") == 1
    assert await metric(worker.metrics_url, REFUSED) == len(late)

    async def all_deleted() -> bool:
        return await _not_visible(stack) == 0

    await eventually(all_deleted, 5.0, "the refused messages deleted, not left in flight")


async def test_after_the_backend_recovers_requests_are_called_and_answered_again(
    stack: Stack, backend_url: str
) -> None:
    """Measured at 5 s a call, then healthy: a request every half second on the 4 s route is
    refused at first (nothing refused is measured), then called and answered again within
    seconds — the estimate is not stuck on the spell."""
    worker = await _start(stack)
    tag = uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        await _slow_spell(http, tag)
        recovered = time.monotonic()
        answers: list[tuple[str, int]] = []
        while (
            time.monotonic() - recovered < RECOVERED_WITHIN_S
            and [s for _, s in answers[-5:]] != [200] * 5
        ):
            path = f"/api/tight/{tag}-after-{len(answers)}"
            status, body, _, _ = await _get(http, path)
            assert status in (200, 503), (status, body)  # never a 504
            answers.append((path, status))
            await asyncio.sleep(0.5)
        took_s = time.monotonic() - recovered

    statuses = [s for _, s in answers]
    assert statuses[-5:] == [200] * 5, f"still refusing after {took_s:.0f} s: {statuses}"
    assert statuses[0] == 503, statuses  # the spell's estimate did refuse at first
    for path, status in answers:
        calls = await backend_calls(backend_url, f"GET {path.removeprefix('/api')}")
        assert calls == (1 if status == 200 else 0), (path, status, calls)
    assert await metric(worker.metrics_url, REFUSED) == statuses.count(503)


async def test_a_cold_worker_calls_whatever_it_gets(stack: Stack, backend_url: str) -> None:
    """A worker that has completed nothing has no estimate: with two slow calls in flight for
    3.5 s, requests with less than 3 s left are still called (and end in 504s) — the age of
    a call in flight is not enough to refuse on before anything was measured."""
    worker = await _start(stack)
    tag = uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        first = [
            asyncio.create_task(_get(http, f"/api/slow/{tag}-first-{i}", SLOW)) for i in range(2)
        ]
        await asyncio.sleep(3.5)
        brief = [f"/api/brief/{tag}-cold-{i}" for i in range(3)]
        results = await asyncio.gather(*(_get(http, path, SLOW) for path in brief))
        await asyncio.gather(*first)

    assert [s for s, *_ in results] == [504] * len(brief), results
    for path in brief:
        assert await backend_calls(backend_url, f"GET {path.removeprefix('/api')}") == 1, path
    assert await metric(worker.metrics_url, REFUSED) == 0
