"""Items the insert cannot take are refused by the writer before the batch insert: a
message written by anyone who may send to the ingest queue (``received_at: 1e300``,
an int past its column) never takes its batch-mates down."""

from __future__ import annotations

import uuid
from typing import Any

from devstack import Stack, eventually, metric
from queuefront.envelope import IngestMessage, encode_ingest
from queuefront.sqs import QueueOps, open_client
from tests.integration.test_ingest import db_rows, send_raw, vote_item

BAD_ITEMS: list[dict[str, Any]] = [
    {"received_at": 1e300},
    {"received_at": -1e300},
    {"received_at": "yesterday"},
    {"choice": 2**40},  # past the int column (and the route's 0..99)
    {"choice": -(2**70)},
    {"choice": 1.5},
    {"voter": None},
    {"id": "not-a-uuid"},
    {"id": 17},
    {"poll_id": "p" * 65},
]


async def test_items_the_insert_cannot_take_are_refused_alone(db_stack: Stack) -> None:
    stack = db_stack
    writer = await stack.start_writer(QF_BATCH_MAX_WAIT_S="1")
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    good = [vote_item(poll, i % 3, f"v{i}") for i in range(200)]
    bad = [{**vote_item(poll, 1, f"bad{i}"), **fields} for i, fields in enumerate(BAD_ITEMS)]
    # each bad item in a message of its own, packed with good ones; and good messages
    messages = [[*good[i * 10 : i * 10 + 10], item] for i, item in enumerate(bad)]
    messages += [good[i : i + 20] for i in range(len(bad) * 10, len(good), 20)]
    await send_raw(stack, [encode_ingest(IngestMessage(route="vote", items=m)) for m in messages])

    async def good_stored() -> bool:
        return await db_rows(stack, poll) == len(good)

    await eventually(good_stored, 30, "every good item stored")
    settings = stack.settings()
    async with open_client(settings) as sqs:
        dlq = await QueueOps.open(sqs, settings.dlq_name(settings.queue_ingest), 0)

        async def dead_lettered() -> bool:
            return await dlq.backlog() == len(bad)

        await eventually(dead_lettered, 40, "each message with a bad item in the DLQ")
        await dlq.close()
    assert await db_rows(stack, poll) == len(good)
    refused = await metric(writer.metrics_url, "queuefront_ingest_poison_rows_total")
    assert refused >= len(bad)
