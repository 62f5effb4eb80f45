"""Packing ingest items into SQS messages.

Items of one route that arrive within the send linger share one SQS message (up to
``QF_INGEST_PACK_MAX`` items and ``QF_MAX_MESSAGE_BYTES``). Each item's 202 still waits
until SQS has accepted the message that carries it, so an acknowledged item is never
only in memory. The writer deletes a message only once every item in it is committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from queuefront.batcher import Batcher
from queuefront.envelope import IngestMessage, encode_ingest, encode_json
from queuefront.sqs import QueueOps

ENVELOPE_ALLOWANCE_BYTES = 1024
"""Room kept in a packed message for its JSON wrapping."""


class Packer:
    """Packs one ingest route's items into SQS messages; ``submit`` returns the message id."""

    def __init__(
        self, route: str, queue: QueueOps, *, max_items: int, max_bytes: int, linger_s: float
    ) -> None:
        self._route = route
        self._queue = queue
        self._batcher: Batcher[dict[str, Any], str] = Batcher(
            self._send,
            linger_s=linger_s,
            max_entries=max_items,
            max_bytes=max_bytes - ENVELOPE_ALLOWANCE_BYTES,
            size_of=lambda item: len(encode_json(item)) + 1,
        )

    async def submit(self, item: dict[str, Any]) -> str:
        return await self._batcher.submit(item)

    async def _send(self, items: Sequence[dict[str, Any]]) -> list[str | BaseException]:
        body = encode_ingest(IngestMessage(route=self._route, items=list(items)))
        message_id = await self._queue.send(body)
        return [message_id] * len(items)

    async def close(self) -> None:
        await self._batcher.close()
