"""The writer when Postgres stops accepting its credentials, as after a rotation of the
RDS-managed master password (deploy/terraform/modules/database): the task was started with
the old password, its open connections live on, and the next new connection is refused.

Waiting would not help, and treating the refusal like a bad row would walk every vote to
the DLQ; the writer gives its batch back and exits non-zero, so that ECS starts a task
that reads the current secret. Here the refusal is real: the writer's own role is made
NOLOGIN and its connections are ended, so its pool's next connection is refused (SQLSTATE
28000) by the shared Postgres.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from devstack import Stack, eventually
from queuefront.envelope import IngestMessage, encode_ingest
from queuefront.sqs import QueueOps, open_client
from tests.conftest import PG_URL
from tests.integration.test_ingest import WRITER_FAST, db_rows, send_raw, vote_item


@pytest.fixture
async def writer_role(db_stack: Stack) -> AsyncIterator[str]:
    """A login role of its own for the writer, with the rights on the stack's database."""
    role = f"qft_writer_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(db_stack.env["QF_DATABASE_URL"])
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        await admin.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
        await admin.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
    finally:
        await admin.close()
    try:
        yield role
    finally:
        conn = await asyncpg.connect(f"{PG_URL}/postgres")
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
            )
            db = urlsplit(db_stack.env["QF_DATABASE_URL"]).path.lstrip("/")
            owner = await asyncpg.connect(f"{PG_URL}/{db}")
            try:
                await owner.execute(f'DROP OWNED BY "{role}"')
            finally:
                await owner.close()
            await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await conn.close()


def as_role(url: str, role: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


async def queue_depth(stack: Stack, dlq: bool) -> int:
    settings = stack.settings()
    name = settings.dlq_name(settings.queue_ingest) if dlq else settings.queue_ingest
    async with open_client(settings) as sqs:
        queue = await QueueOps.open(sqs, name, 0)
        attrs = await queue.attributes(
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"
        )
        await queue.close()
    return sum(int(v) for v in attrs.values())


async def test_a_refused_login_stops_the_writer_and_sends_nothing_to_the_dlq(
    db_stack: Stack, writer_role: str
) -> None:
    stack = db_stack
    url = as_role(stack.env["QF_DATABASE_URL"], writer_role)
    writer = await stack.start_writer(QF_DATABASE_URL=url, **WRITER_FAST)
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    first = encode_ingest(IngestMessage(route="vote", items=[vote_item(poll, 1, "a")]))
    await send_raw(stack, [first])

    async def stored() -> bool:
        return await db_rows(stack, poll) == 1

    await eventually(stored, 15, "the first vote stored with the role's login")

    # the rotation: the role's password no longer works (here: it may not log in at all),
    # and its open connections end
    conn = await asyncpg.connect(f"{PG_URL}/postgres")
    try:
        await conn.execute(f'ALTER ROLE "{writer_role}" NOLOGIN')
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            writer_role,
        )
    finally:
        await conn.close()
    second = encode_ingest(IngestMessage(route="vote", items=[vote_item(poll, 2, "b")]))
    await send_raw(stack, [second])

    async def exited() -> bool:
        return writer.popen.poll() is not None

    await eventually(exited, 30, "the writer exits once its credentials are refused")
    assert writer.popen.returncode != 0
    assert "refused its credentials" in writer.log()
    # the vote was given back, not refused or counted towards the DLQ by the writer, and
    # it is still in SQS for the next task. (Where in SQS depends on the emulator: it counts
    # every visibility change as a receive, so a message the writer's keeper extended twice
    # under load reaches the DLQ when released; real SQS counts receives only.)
    log = writer.log()
    assert "batch cannot be stored" not in log and "message kept for retry or DLQ" not in log
    assert await queue_depth(stack, dlq=False) + await queue_depth(stack, dlq=True) == 1, log
    assert await db_rows(stack, poll) == 1
