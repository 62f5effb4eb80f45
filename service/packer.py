"""Packing ingest items into SQS messages.

Items of one route that arrive while the previous message is being sent share the next
one (group commit, up to ``QF_INGEST_PACK_MAX`` items and ``QF_MAX_MESSAGE_BYTES``): one
item per message when idle, many under load, no timer either way. Each item's 202 still waits
until SQS has accepted the message that carries it, so an acknowledged item is never
only in memory. The writer deletes a message only once every item in it is committed.

One item never takes its message-mates down: when SQS refuses a packed message for
what it holds (``InvalidMessageContents``, too long: a sender fault), its items are sent
again one per message, and only the item at fault fails. A message whose send went
unanswered (``SendUnknown``) is sent once more as it is: SQS may now hold it twice, and
that is harmless here alone — every item carries its id and the writer stores an id
once (``ON CONFLICT (id) DO NOTHING``), counting only rows it inserted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from queuefront.batcher import Batcher
from queuefront.envelope import encode_ingest_items, ingest_overhead_bytes
from queuefront.sqs import QueueOps, SendUnknown, SQSEntryError

UNKNOWN_RESENDS = 1
"""Sends again of a message whose send went unanswered (see the module's docstring)."""

ENVELOPE_ALLOWANCE_BYTES = 1024
"""Room kept in a packed message for its JSON wrapping."""


class Packer:
    """Packs one ingest route's items into SQS messages; ``submit`` returns the message id.

    Items arrive already encoded (``encode_json`` of the validated item, done once at
    the api) and a message is their concatenation inside a fixed head and tail: the
    writer decodes exactly what ``encode_ingest`` of an ``IngestMessage`` would give,
    without each item being encoded again for its size and again for the message.
    """

    def __init__(self, route: str, queue: QueueOps, *, max_items: int, max_bytes: int) -> None:
        self._route = route
        self._overhead = ingest_overhead_bytes(route)
        self._queue = queue
        self._max_bytes = max_bytes
        self._batcher: Batcher[bytes, str] = Batcher(
            self._send,
            linger_s=None,  # group commit: see queuefront.batcher
            max_entries=max_items,
            max_bytes=max_bytes - ENVELOPE_ALLOWANCE_BYTES,
            size_of=lambda item: len(item) + 1,
        )

    def fits(self, encoded_item: bytes) -> bool:
        """Whether the item, alone in its message, is within the queue's limit."""
        return self._overhead + len(encoded_item) <= self._max_bytes

    async def submit(self, encoded_item: bytes) -> str:
        return await self._batcher.submit(encoded_item)

    async def _send(self, items: Sequence[bytes]) -> list[str | BaseException]:
        try:
            message_id = await self._send_message(items)
        except SQSEntryError as exc:
            if not exc.sender_fault or len(items) == 1:
                raise
            # one item made SQS refuse the message: each alone, so only it fails
            alone = await asyncio.gather(
                *(self._send_message([item]) for item in items), return_exceptions=True
            )
            return list(alone)
        return [message_id] * len(items)

    async def _send_message(self, items: Sequence[bytes]) -> str:
        body = encode_ingest_items(self._route, items)
        for _ in range(UNKNOWN_RESENDS):
            try:
                return await self._queue.send(body)
            except SendUnknown:
                continue  # the same items, the same ids: stored once whatever SQS holds
        return await self._queue.send(body)

    async def close(self) -> None:
        await self._batcher.close()
