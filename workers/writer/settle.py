"""Settling a stored batch: delete each message whose items are all committed, give the
others back (a short visibility) so SQS counts their receives towards the DLQ."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from queuefront import metrics
from queuefront.consumer import Held, VisibilityKeeper
from queuefront.sqs import QueueOps
from queuefront.telemetry import get_logger
from workers.writer.gather import Parsed
from workers.writer.store import BatchResult

log = get_logger(__name__)

POISON_RETRY_S = 1
"""Visibility given back to a message with an unstorable item: it reaches the DLQ soon."""


async def settle(
    batch: list[Parsed],
    result: BatchResult,
    keeper: VisibilityKeeper,
    max_receive_count: int,
    dlq: QueueOps | None = None,
) -> None:
    """Deletes every message whose items are all stored; refuses what must go to the DLQ
    at once; gives the others back."""
    to_dlq = [p for p in batch if p.dead_letter and dlq is not None]
    if to_dlq:
        assert dlq is not None
        keeper.untrack(*(p.held for p in to_dlq))
        await asyncio.gather(*(dead_letter(p, dlq) for p in to_dlq))
        batch = [p for p in batch if p not in to_dlq]
    done: list[Held] = []
    failed: list[Held] = []
    for parsed in batch:
        bad = (
            parsed.poison
            or parsed.refused
            or any(i.id in result.bad_ids for i in parsed.items)
        )
        (failed if bad else done).append(parsed.held)
        if bad:
            final = parsed.held.message.receive_count >= max_receive_count
            metrics.POISON_MESSAGES.labels(str(final).lower()).inc()
            log.warning(
                "message kept for retry or DLQ",
                poison=parsed.poison or ("item refused" if parsed.refused else "row"),
                receive_count=parsed.held.message.receive_count,
                final=final,
            )
    keeper.untrack(*done, *failed)
    await asyncio.gather(*(h.delete() for h in done), *(h.release(POISON_RETRY_S) for h in failed))


async def dead_letter(parsed: Parsed, dlq: QueueOps) -> None:
    """Writes a refused message to the DLQ with its reason, then deletes it here; if the
    DLQ does not take it, the message comes back after a short visibility and is refused
    again (it is never deleted before the DLQ has it)."""
    try:
        await dlq.send(parsed.dead_letter)
    except Exception as exc:
        log.warning("refused message not dead-lettered, retrying", error=repr(exc))
        await parsed.held.release(POISON_RETRY_S)
        return
    await parsed.held.delete()


async def give_back(batch: list[Parsed], keeper: VisibilityKeeper, *, error: str) -> None:
    """A batch the database refuses for a reason that is no row's (a missing table or
    column, a privilege): said loudly, and given back so that SQS counts the receive —
    its messages wait in the DLQ for the fix and a redrive instead of stalling the writer."""
    metrics.WRITER_BATCH_FAILURES.inc()
    log.error(
        "batch cannot be stored: the database refuses it; its messages go back to the queue"
        " and reach the DLQ after maxReceiveCount receives (fix, then redrive)",
        error=error,
        messages=len(batch),
    )
    held = [p.held for p in batch]
    keeper.untrack(*held)
    await asyncio.gather(*(h.release(POISON_RETRY_S) for h in held))


async def release(held: Iterable[Held], keeper: VisibilityKeeper) -> None:
    """Gives messages back at once (visibility 0): another writer may take them now."""
    messages = list(held)
    keeper.untrack(*messages)
    await asyncio.gather(*(h.release() for h in messages))
