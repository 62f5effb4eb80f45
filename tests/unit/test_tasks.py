"""Background tasks: kept while they run, forgotten when they end, failures logged, and
stopped for sure — even a task that swallows its first cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import gc

import pytest

from queuefront import tasks
from queuefront.tasks import TaskSet


async def test_a_task_is_kept_while_it_runs_and_forgotten_when_it_ends() -> None:
    owner = TaskSet("test")
    release = asyncio.Event()
    done: list[int] = []

    async def work() -> None:
        await release.wait()
        done.append(1)

    owner.spawn(work())
    gc.collect()  # nobody else holds the task: the set must
    assert len(owner) == 1
    release.set()
    await owner.wait()
    assert done == [1] and len(owner) == 0


async def test_a_failure_is_logged_when_it_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    noted: list[tuple[str, BaseException | None]] = []
    monkeypatch.setattr(
        tasks.FAILURES, "note", lambda event, exc=None, **_: noted.append((event, exc))
    )
    owner = TaskSet("test")

    async def broken() -> None:
        raise RuntimeError("boom")

    owner.spawn(broken(), name="broken")
    await owner.wait()
    assert [(e, str(x)) for e, x in noted] == [("test: background task failed", "boom")]


async def test_stop_ends_every_task_even_one_that_swallows_a_cancel() -> None:
    owner = TaskSet("test")

    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # once, as a timeout racing
            await asyncio.sleep(60)  # a cancel can on 3.11
        await asyncio.sleep(60)

    kept = [owner.spawn(stubborn()), owner.spawn(asyncio.sleep(60))]
    await asyncio.sleep(0)
    await asyncio.wait_for(owner.stop(), 5)
    assert all(t.done() for t in kept) and len(owner) == 0


async def test_running_stops_its_task_when_the_block_ends() -> None:
    async with tasks.running(asyncio.sleep(60), name="sleeper") as task:
        assert not task.done()
    assert task.cancelled()
