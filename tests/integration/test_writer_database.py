"""The writer against a database that does not look like the route table says: reserved
words as names, a missing table at start, a table that goes away while it runs."""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from devstack import Stack, eventually, metric
from queuefront.envelope import IngestMessage, encode_ingest
from queuefront.sqs import QueueOps, open_client
from queuefront.tally import TALLY_LOCK
from tests.integration.test_ingest import (
    WRITER_FAST,
    api_tally,
    db_rows,
    db_tally,
    send_raw,
    vote_all,
    vote_item,
)

# every name a reserved word of SQL: unquoted, each insert is a syntax error
RESERVED_ROUTES = """
[[routes]]
name = "tag"
method = "POST"
path = "/api/boards/{group}/tags"
kind = "ingest"
public = true
tally = { group = "group", count = "order" }

[routes.sink]
table = "select"

[routes.sink.fields]
group = { type = "text", max_length = 64, source = "path" }
order = { type = "int", min = 0, max = 9 }
user = { type = "text", max_length = 64 }
data = { type = "jsonb", required = false }

[[routes]]
name = "tag_results"
method = "GET"
path = "/api/boards/{group}/results"
kind = "tally"
source = "tag"
"""

CREATE_RESERVED = """
CREATE TABLE "select" (
    id uuid PRIMARY KEY, received_at timestamptz NOT NULL,
    "group" text NOT NULL, "order" integer NOT NULL, "user" text NOT NULL, data jsonb
)
"""


@pytest.fixture
def reserved_routes(tmp_path: Path) -> str:
    path = tmp_path / "reserved.toml"
    path.write_text(RESERVED_ROUTES)
    return str(path)


async def execute(stack: Stack, sql: str) -> None:
    conn = await asyncpg.connect(stack.env["QF_DATABASE_URL"])
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def test_reserved_words_as_table_and_column_names(
    db_stack: Stack, reserved_routes: str
) -> None:
    stack = db_stack
    await execute(stack, CREATE_RESERVED)
    await stack.start_api(QF_ROUTES_FILE=reserved_routes)
    await stack.start_writer(QF_ROUTES_FILE=reserved_routes, **WRITER_FAST)
    board = f"b-{uuid.uuid4().hex[:6]}"
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        for i in range(6):
            body = {"order": i % 2, "user": f"u{i}", "data": {"n": i}}
            async with http.post(f"/api/boards/{board}/tags", json=body) as resp:
                assert resp.status == 202, await resp.text()

        async def counted() -> bool:
            async with http.get(f"/api/boards/{board}/results") as resp:
                return (await resp.json())["results"] == [
                    {"order": 0, "votes": 3},
                    {"order": 1, "votes": 3},
                ]

        await eventually(counted, 15, "six rows stored and tallied")
        # reconcile reads the same names back
        code, out = await stack.run_module("queuefront.admin", "reconcile")
        assert code == 0, out
        assert await counted()


async def test_writer_refuses_to_start_when_a_sink_does_not_match(db_stack: Stack) -> None:
    stack = db_stack
    await execute(stack, "ALTER TABLE votes DROP COLUMN voter")
    with pytest.raises(RuntimeError, match="exited") as failed:
        await stack.start_writer()
    assert "votes" in str(failed.value)
    assert "voter" in str(failed.value)  # names the problem, not only "failed"
    writer = stack.procs[-1]
    assert writer.popen.wait(5) != 0


async def test_a_table_gone_at_run_time_gives_batches_back_to_the_dlq(db_stack: Stack) -> None:
    stack = db_stack
    writer = await stack.start_writer(**WRITER_FAST)
    readyz = writer.metrics_url.replace("/metrics", "/readyz")
    await execute(stack, "ALTER TABLE votes RENAME TO votes_away")
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    await send_raw(
        stack, [encode_ingest(IngestMessage(route="vote", items=[vote_item(poll, 1, "a")]))]
    )
    settings = stack.settings()
    async with aiohttp.ClientSession() as http, open_client(settings) as sqs:

        async def unready() -> bool:
            async with http.get(readyz) as resp:
                return resp.status == 503 and "postgres-schema" in (await resp.json())["down"]

        await eventually(unready, 15, "readyz names the schema problem")
        assert await metric(writer.metrics_url, "queuefront_writer_batch_failures_total") >= 1
        dlq = await QueueOps.open(sqs, settings.dlq_name(settings.queue_ingest), 0)

        async def dead_lettered() -> bool:
            return await dlq.backlog() == 1

        # bounded: every receive gives up after a few tries, so SQS moves it on
        await eventually(dead_lettered, 45, "the unstorable message in the DLQ")
        await execute(stack, "ALTER TABLE votes_away RENAME TO votes")
        code, out = await stack.run_module("queuefront.admin", "redrive")
        assert code == 0, out

        async def stored() -> bool:
            return await db_rows(stack, poll) == 1

        await eventually(stored, 20, "stored after the fix and a redrive")

        async def ready() -> bool:
            async with http.get(readyz) as resp:
                return resp.status == 200

        await eventually(ready, 10, "ready again once a batch is stored")


async def test_jsonb_values_postgres_would_refuse_get_400(
    stack: Stack, reserved_routes: str
) -> None:
    await stack.start_api(QF_ROUTES_FILE=reserved_routes)
    nested: object = 1
    for _ in range(40):
        nested = [nested]
    cases = [
        ({"order": 1, "user": "u", "data": {"note": "a\u0000b"}}, "NUL characters"),
        ({"order": 1, "user": "u", "data": {"a\u0000": 1}}, "NUL characters"),
        ({"order": 1, "user": "u", "data": nested}, "nested deeper than 32"),
    ]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        for body, problem in cases:
            async with http.post("/api/boards/b1/tags", json=body) as resp:
                payload = await resp.json()
                assert resp.status == 400, payload
                assert problem in payload["message"]
        ok = {"order": 1, "user": "u", "data": {"deep": [[["fine"]]]}}
        async with http.post("/api/boards/b1/tags", json=ok) as resp:
            assert resp.status == 202


async def test_an_item_over_the_message_limit_gets_413(stack: Stack, reserved_routes: str) -> None:
    limit = 65_536
    await stack.start_api(QF_ROUTES_FILE=reserved_routes, QF_MAX_MESSAGE_BYTES=str(limit))
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        # a body under the limit whose item (with id, time and path fields) is not
        for size in (limit - 100, limit - 30):
            body = {"order": 1, "user": "u", "data": "x" * size}
            async with http.post("/api/boards/b1/tags", json=body) as resp:
                payload = await resp.json()
                assert resp.status == 413, (size, payload)
                assert payload["error"] == "payload_too_large"
        # over the limit before parsing: 413 too
        body = {"order": 1, "user": "u", "data": "x" * (limit + 10)}
        async with http.post("/api/boards/b1/tags", json=body) as resp:
            assert resp.status == 413
        small = {"order": 1, "user": "u", "data": "x" * (limit - 400)}
        async with http.post("/api/boards/b1/tags", json=small) as resp:
            assert resp.status == 202


async def test_a_hung_statement_is_cancelled_and_its_batch_stored_once_later(
    db_stack: Stack,
) -> None:
    """Something holds the tally lock the writers need (an operator's reconcile that never
    ends, a forgotten session): the writer's insert waits for it. With a statement
    timeout the wait ends, is counted as a retry and tried again; once the lock is
    free every vote is stored once and counted once — nothing held for as long as the
    lock is, nothing lost, nothing doubled."""
    stack = db_stack
    await stack.start_api()
    writer = await stack.start_writer(QF_DB_COMMAND_TIMEOUT_S="1", **WRITER_FAST)
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    holder = await asyncpg.connect(stack.env["QF_DATABASE_URL"])
    try:
        hold = holder.transaction()
        await hold.start()
        await holder.execute("SELECT pg_advisory_xact_lock($1)", TALLY_LOCK)
        await vote_all(stack, poll, 40, concurrency=8)

        async def retried() -> bool:
            return await metric(writer.metrics_url, "queuefront_writer_db_retries_total") >= 2

        # without a statement timeout the insert waits for the lock forever: no retry
        await eventually(retried, 20, "the waiting statement cancelled and retried")
        assert await db_rows(stack, poll) == 0
        await hold.rollback()
    finally:
        await holder.close()

    async def stored() -> bool:
        return await db_rows(stack, poll) == 40

    await eventually(stored, 30, "every vote stored once the lock is free")
    async with aiohttp.ClientSession() as http:

        async def counted() -> bool:
            return await api_tally(http, stack, poll) == await db_tally(stack, poll)

        await eventually(counted, 30, "the live tally equals the table")
    assert await db_rows(stack, poll) == 40
