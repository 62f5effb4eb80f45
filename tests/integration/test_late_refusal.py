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

SLOTS = 8
SLOW_MS = 5000
"""The slow backend's service time: within the `slow` route's 8 s window, beyond the
`brief` route's 3 s."""
SLOW = {"X-Demo-Delay-Ms": str(SLOW_MS)}
SLOW_WINDOW_S = 8.0
AT_ONCE_S = 1.5
"""A refusal comes as soon as a worker takes the message, not at its deadline."""
RECOVERED_WITHIN_S = 25.0
"""After the spell: the timed-out calls leave the 5 s window (~5 s), and nothing is left
that says "too slow"."""
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


async def _answered_at(
    http: aiohttp.ClientSession, path: str
) -> tuple[int, dict[str, Any], float, str | None, float]:
    """``_get`` of a slow call, and when its answer came (monotonic)."""
    return (*await _get(http, path, SLOW), time.monotonic())


async def _start(stack: Stack, slots: int = SLOTS) -> Proc:
    await stack.start_api(QF_ADMISSION_PREDICTIVE="false")
    return await stack.start_worker(QF_WORKER_CONCURRENCY=str(slots))


async def test_a_slow_backend_gets_no_call_for_a_window_it_cannot_fit(
    stack: Stack, backend_url: str
) -> None:
    """A worker of two slots, the backend at 5 s a call on the `slow` route (8 s window): six
    requests sent half a second after the first two wait for a slot, and have 3.5 s left
    when one frees — less than a call takes. They get 503 backend_slow as soon as the slots
    free (not at their deadline) and the backend never sees them; a request sent afterwards,
    with its whole window, is still called and answered; the refused messages are deleted.
    (Called, each would have held a slot into a 504.)"""
    worker = await _start(stack, slots=2)
    tag = uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        first = [
            asyncio.create_task(_get(http, f"/api/slow/{tag}-first-{i}", SLOW)) for i in range(2)
        ]
        await asyncio.sleep(0.5)
        late = [f"/api/slow/{tag}-late-{i}" for i in range(6)]
        refusals = [asyncio.create_task(_answered_at(http, path)) for path in late]
        assert [s for s, *_ in await asyncio.gather(*first)] == [200, 200]
        slots_free_at = time.monotonic()
        await asyncio.sleep(0.5)
        fits = f"/api/slow/{tag}-fits"
        fit = await _get(http, fits, SLOW)
        refused = [await task for task in refusals]

    assert fit[0] == 200, fit  # its whole window holds a 5 s call: never refused
    for status, body, elapsed, retry_after, answered_at in refused:
        assert status == 503, (status, body)
        assert answered_at - slots_free_at < AT_ONCE_S, "not refused when a slot took it"
        assert body["error"] == "backend_slow", body
        assert body["service_s"] >= SLOW_MS / 1000 * 0.9, body
        assert body["seconds_left"] < body["service_s"], body
        assert elapsed < SLOW_WINDOW_S - AT_ONCE_S, f"refused after {elapsed:.2f} s"
        assert retry_after is not None and int(retry_after) >= 1
    for path in late:
        assert await backend_calls(backend_url, f"GET {path.removeprefix('/api')}") == 0, path
    assert await backend_calls(backend_url, f"GET {fits.removeprefix('/api')}") == 1
    assert await metric(worker.metrics_url, REFUSED) == len(late)

    async def all_deleted() -> bool:
        return await stack.in_flight() == 0

    await eventually(all_deleted, 5.0, "the refused messages deleted, not left in flight")


async def test_after_the_backend_recovers_requests_are_called_and_answered_again(
    stack: Stack, backend_url: str
) -> None:
    """Two calls on the `brief` route (3 s window) run into its window: the worker has
    measured the route at its whole window. The backend is healthy from then on: a request
    every half second is refused at first (nothing refused is measured), then called and
    answered again within seconds — the estimate is not stuck on the spell."""
    worker = await _start(stack)
    tag = uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        spell = await asyncio.gather(
            *(_get(http, f"/api/brief/{tag}-spell-{i}", SLOW) for i in range(2))
        )
        assert [s for s, *_ in spell] == [504, 504], spell
        recovered = time.monotonic()
        answers: list[tuple[str, int]] = []
        while (
            time.monotonic() - recovered < RECOVERED_WITHIN_S
            and [s for _, s in answers[-5:]] != [200] * 5
        ):
            path = f"/api/brief/{tag}-after-{len(answers)}"
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
    """Requests on the `slow` route (8 s window) wait in the queue until a worker starts,
    with 5 s calls: a worker that had measured the route would refuse what is left of their
    windows. A worker that has completed nothing has no estimate: it calls them (they end
    in 504s) and refuses nothing."""
    await stack.start_api(QF_ADMISSION_PREDICTIVE="false")
    tag = uuid.uuid4().hex[:8]
    queued = [f"/api/slow/{tag}-queued-{i}" for i in range(3)]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        waiting = [asyncio.create_task(_get(http, path, SLOW)) for path in queued]
        await asyncio.sleep(3.0)
        worker = await stack.start_worker(QF_WORKER_CONCURRENCY=str(SLOTS))
        results = await asyncio.gather(*waiting)

    assert [s for s, *_ in results] == [504] * len(queued), results
    for path in queued:
        assert await backend_calls(backend_url, f"GET {path.removeprefix('/api')}") == 1, path
    assert await metric(worker.metrics_url, REFUSED) == 0


async def test_one_call_that_ran_into_its_window_refuses_nothing_after_it(
    stack: Stack, backend_url: str
) -> None:
    """One request on the `brief` route (3 s window) asks the backend for 5 s and gets its
    504; the requests right after it, with nothing slow about them, are called and answered:
    one call that ran long is no evidence about the next (the compose suite's timeout test,
    followed by its restart test, found a worker refusing a whole route for the mean of that
    one call)."""
    worker = await _start(stack)
    tag = uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        slow = await _get(http, f"/api/brief/{tag}-slow", SLOW)
        assert slow[0] == 504, slow
        after = [await _get(http, f"/api/brief/{tag}-after-{i}") for i in range(5)]
    assert [status for status, *_ in after] == [200] * 5, after
    assert await metric(worker.metrics_url, REFUSED) == 0
