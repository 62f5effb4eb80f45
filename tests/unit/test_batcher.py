"""The coalescing batcher: pure logic, no infrastructure."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from queuefront.batcher import Batcher


class Recorder:
    def __init__(self, fail: set[str] | None = None, delay_s: float = 0.0) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail or set()
        self.delay_s = delay_s

    async def __call__(self, items: Sequence[str]) -> list[str | BaseException]:
        self.calls.append(list(items))
        await asyncio.sleep(self.delay_s)
        return [ValueError(i) if i in self.fail else i.upper() for i in items]


async def test_concurrent_submits_coalesce_into_batches_of_ten() -> None:
    rec = Recorder()
    batcher: Batcher[str, str] = Batcher(rec, linger_s=0.01)
    results = await asyncio.gather(*(batcher.submit(f"m{i}") for i in range(25)))
    assert results == [f"M{i}" for i in range(25)]
    assert [len(c) for c in rec.calls] == [10, 10, 5]


async def test_each_caller_gets_its_own_outcome() -> None:
    batcher: Batcher[str, str] = Batcher(Recorder(fail={"b"}), linger_s=0.005)
    outcomes = await asyncio.gather(*(batcher.submit(x) for x in "abc"), return_exceptions=True)
    assert outcomes[0] == "A" and outcomes[2] == "C"
    assert isinstance(outcomes[1], ValueError)


async def test_byte_limit_splits_batches() -> None:
    rec = Recorder()
    batcher: Batcher[str, str] = Batcher(rec, linger_s=0.01, max_bytes=10, size_of=len)
    await asyncio.gather(*(batcher.submit(x) for x in ["aaaa", "bbbb", "cccc", "dd"]))
    assert rec.calls == [["aaaa", "bbbb"], ["cccc", "dd"]]


async def test_a_lone_item_waits_only_the_linger() -> None:
    rec = Recorder()
    batcher: Batcher[str, str] = Batcher(rec, linger_s=0.02)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await batcher.submit("x") == "X"
    assert 0.015 <= loop.time() - started < 0.5


async def test_whole_call_failure_fails_every_entry() -> None:
    async def broken(items: Sequence[str]) -> list[str | BaseException]:
        raise ConnectionError("down")

    batcher: Batcher[str, str] = Batcher(broken, linger_s=0.001)
    outcomes = await asyncio.gather(
        batcher.submit("a"), batcher.submit("b"), return_exceptions=True
    )
    assert all(isinstance(o, ConnectionError) for o in outcomes)


async def test_cancelled_caller_does_not_cancel_its_batch() -> None:
    rec = Recorder(delay_s=0.05)
    batcher: Batcher[str, str] = Batcher(rec, linger_s=0.001)
    first = asyncio.create_task(batcher.submit("a"))
    second = asyncio.create_task(batcher.submit("b"))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == "B"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert rec.calls == [["a", "b"]]


async def test_close_flushes_pending_items() -> None:
    rec = Recorder()
    batcher: Batcher[str, str] = Batcher(rec, linger_s=10)
    pending = asyncio.create_task(batcher.submit("late"))
    await asyncio.sleep(0)
    await batcher.close()
    assert await pending == "LATE"
    with pytest.raises(RuntimeError):
        await batcher.submit("after")


async def test_group_commit_sends_at_once_when_idle_and_gathers_during_a_call() -> None:
    """linger_s=None: an idle batcher sends at once (no linger added); what arrives
    while a call is in flight leaves together when it returns."""
    rec = Recorder(delay_s=0.05)
    batcher: Batcher[str, str] = Batcher(rec, linger_s=None)
    first = asyncio.create_task(batcher.submit("a"))
    await asyncio.sleep(0.01)
    assert rec.calls == [["a"]]  # sent before any linger would have passed
    rest = [asyncio.create_task(batcher.submit(x)) for x in "bcd"]
    await asyncio.sleep(0.01)
    assert rec.calls == [["a"]]  # gathering while "a" is in flight
    assert await first == "A"
    assert await asyncio.gather(*rest) == ["B", "C", "D"]
    assert rec.calls == [["a"], ["b", "c", "d"]]
    # idle again: the next one goes at once, alone
    assert await batcher.submit("e") == "E"
    assert rec.calls[-1] == ["e"]


async def test_group_commit_still_splits_full_batches() -> None:
    rec = Recorder(delay_s=0.02)
    batcher: Batcher[str, str] = Batcher(rec, linger_s=None, max_entries=3)
    first = asyncio.create_task(batcher.submit("x"))
    await asyncio.sleep(0)
    await asyncio.gather(first, *(batcher.submit(f"m{i}") for i in range(7)))
    assert [len(c) for c in rec.calls] == [1, 3, 3, 1]
