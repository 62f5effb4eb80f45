"""Admission reopens by itself: an estimate that only completions could change once kept
every route closed after a slow spell, until the api restarted."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from devstack import Stack, metric

BRIEF_WINDOW_S = 3.0  # the `brief` route of tests/routes.toml
SLOTS = 8
SLOW = {"X-Demo-Delay-Ms": "5000"}  # longer than the window: every call runs into it
REOPEN_WITHIN_S = 30.0
"""After the spell: its last completions are seen within ~2 s, they leave the estimate's
window 5 s and one service time (~3 s) later, then a probe goes through: ~12 s."""


async def _get(
    http: aiohttp.ClientSession, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    async with http.get(path, headers=headers or {}) as resp:
        body = await resp.read()
        if resp.content_type == "application/json" and resp.status >= 500:
            return resp.status, await resp.json()
        return resp.status, {"body": body.decode(errors="replace")}


async def test_admission_reopens_after_a_slow_spell(stack: Stack) -> None:
    """Eight clients loop on calls that outlast the 3 s window until the measured service
    time leaves no room in it and every request is refused ("predicted wait (0.0 s)").
    Then the backend is healthy again and one client asks every half second: requests are
    admitted and answered again within seconds, not refused until the api restarts."""
    await stack.start_api(QF_BACKLOG_POLL_S="0.2")
    await stack.start_worker(QF_WORKER_CONCURRENCY=str(SLOTS))
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        spell_ends = time.monotonic() + 5.0

        async def slow_client(i: int) -> list[int]:
            statuses, n = [], 0
            while time.monotonic() < spell_ends:
                status, _ = await _get(http, f"/api/brief/slow-{i}-{n}", SLOW)
                statuses.append(status)
                n += 1
                if status == 503:
                    await asyncio.sleep(0.2)
            return statuses

        spell = [s for c in await asyncio.gather(*map(slow_client, range(SLOTS))) for s in c]
        assert 504 in spell, spell  # the calls did run into the window
        # the backend is healthy from here on, but the spell's measurements close admission
        await asyncio.sleep(1.5)  # the last completions: a worker report and a poll later
        status, body = await _get(http, "/api/brief/closed")
        assert status == 503, (status, body)
        assert "service time" in body["message"], body

        recovered = time.monotonic()
        answers: list[int] = []
        while time.monotonic() - recovered < REOPEN_WITHIN_S and answers[-5:] != [200] * 5:
            status, body = await _get(http, f"/api/brief/after-{len(answers)}")
            answers.append(status)
            await asyncio.sleep(0.5)
        reopened_after_s = time.monotonic() - recovered

    assert answers[-5:] == [200] * 5, f"still closed after {reopened_after_s:.0f} s: {answers}"
    assert set(answers) <= {200, 503}, answers  # refused at once or answered: never a 504
    probes = await metric(stack.api_metrics_url, "queuefront_admission_probes_total")
    assert probes >= 1
