"""The write path on real Postgres, Redis and SQS: stored once, counted once, lose nothing."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from typing import Any

import aiohttp
import asyncpg
from redis.asyncio import Redis

from devstack import Stack, TcpProxy, backend_calls, eventually, metric
from queuefront.envelope import IngestMessage, encode_ingest
from queuefront.keys import Keys
from queuefront.queues import ensure_queues
from queuefront.sqs import QueueOps, open_client

WRITER_FAST = {"QF_BATCH_MAX_WAIT_S": "0.3"}


async def db_rows(stack: Stack, poll: str | None = None) -> int:
    conn = await asyncpg.connect(stack.env["QF_DATABASE_URL"])
    try:
        if poll is None:
            return int(await conn.fetchval("SELECT count(*) FROM votes"))
        return int(await conn.fetchval("SELECT count(*) FROM votes WHERE poll_id = $1", poll))
    finally:
        await conn.close()


async def db_tally(stack: Stack, poll: str) -> dict[int, int]:
    conn = await asyncpg.connect(stack.env["QF_DATABASE_URL"])
    try:
        rows = await conn.fetch(
            "SELECT choice, count(*) AS n FROM votes WHERE poll_id = $1 GROUP BY choice", poll
        )
    finally:
        await conn.close()
    return {r["choice"]: r["n"] for r in rows}


async def api_tally(http: aiohttp.ClientSession, stack: Stack, poll: str) -> dict[int, int]:
    async with http.get(f"{stack.api_url}/api/polls/{poll}/results") as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "public, s-maxage=1"
        body = await resp.json()
    assert body["poll_id"] == poll
    return {r["choice"]: r["votes"] for r in body["results"]}


async def vote_all(
    stack: Stack, poll: str, count: int, *, concurrency: int = 64, choices: int = 5
) -> list[str]:
    """Sends ``count`` votes through the api; every one must be acknowledged with 202."""
    ids: list[str] = []
    todo = iter(range(count))
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:

        async def client() -> None:
            for i in todo:
                body = {"choice": i % choices, "voter": f"viewer-{i}"}
                async with http.post(f"/api/polls/{poll}/votes", json=body) as resp:
                    assert resp.status == 202, await resp.text()
                    reply = await resp.json()
                    assert reply["status"] == "accepted"
                    ids.append(reply["id"])

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return ids


async def test_a_thousand_votes_are_stored_once_and_tallied(db_stack: Stack) -> None:
    stack = db_stack
    await stack.start_api()
    writer = await stack.start_writer(**WRITER_FAST)
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    ids = await vote_all(stack, poll, 1000)
    assert len(set(ids)) == 1000

    async def stored() -> bool:
        return await db_rows(stack, poll) >= 1000

    await eventually(stored, 30, "1000 rows stored")
    await asyncio.sleep(0.5)
    assert await db_rows(stack, poll) == 1000
    expected = {c: 200 for c in range(5)}
    assert await db_tally(stack, poll) == expected
    async with aiohttp.ClientSession() as http:
        assert await api_tally(http, stack, poll) == expected
    # batches and packing were really used: fewer commits and messages than items
    commits = await metric(writer.metrics_url, "queuefront_ingest_commits_total")
    packed = await metric(writer.metrics_url, "queuefront_ingest_items_per_message_count")
    assert 1 <= commits < 100
    assert 1 <= packed < 1000
    assert await metric(writer.metrics_url, "queuefront_ingest_rows_inserted_total") == 1000


async def send_raw(stack: Stack, bodies: list[str]) -> None:
    settings = stack.settings()
    async with open_client(settings) as sqs:
        ingest = await QueueOps.open(sqs, settings.queue_ingest, 0.001)
        await asyncio.gather(*(ingest.send(b) for b in bodies))
        await ingest.close()


def vote_item(poll: str, choice: int, voter: str, item_id: str | None = None) -> dict[str, Any]:
    return {
        "id": item_id or str(uuid.uuid4()),
        "received_at": time.time(),
        "poll_id": poll,
        "choice": choice,
        "voter": voter,
    }


async def test_a_message_delivered_twice_stores_and_counts_once(db_stack: Stack) -> None:
    stack = db_stack
    await stack.start_api()
    writer = await stack.start_writer(**WRITER_FAST)
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    message = encode_ingest(
        IngestMessage(route="vote", items=[vote_item(poll, 1, "a"), vote_item(poll, 2, "b")])
    )
    await send_raw(stack, [message])

    async def stored() -> bool:
        return await db_rows(stack, poll) == 2

    await eventually(stored, 10, "first delivery stored")
    await send_raw(stack, [message])  # the same message again, as SQS may deliver it

    async def skipped() -> bool:
        return await metric(writer.metrics_url, "queuefront_ingest_duplicates_total") == 2

    await eventually(skipped, 10, "second delivery seen as duplicates")
    assert await db_rows(stack, poll) == 2
    async with aiohttp.ClientSession() as http:
        assert await api_tally(http, stack, poll) == {1: 1, 2: 1}


async def test_kill_9_of_a_writer_mid_load_loses_and_doubles_nothing(db_stack: Stack) -> None:
    stack = db_stack
    settings = stack.settings().model_copy(update={"visibility_timeout_s": 3})
    await ensure_queues(settings)  # killed writer's messages come back after 3 s
    await stack.start_api()
    writer = await stack.start_writer(QF_BATCH_SIZE="300")
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    sending = asyncio.create_task(vote_all(stack, poll, 10_000, concurrency=100, choices=7))

    async def some_stored() -> bool:
        return await db_rows(stack, poll) >= 2000

    await eventually(some_stored, 60, "2000 rows before the kill")
    writer.signal(signal.SIGKILL)
    writer.popen.wait(10)
    before_restart = await db_rows(stack, poll)
    assert before_restart < 10_000
    await stack.start_writer(QF_BATCH_SIZE="300")
    ids = await sending
    assert len(set(ids)) == 10_000

    async def all_stored() -> bool:
        return await db_rows(stack, poll) >= 10_000

    await eventually(all_stored, 90, "10,000 rows after the restart")
    await asyncio.sleep(1)
    assert await db_rows(stack, poll) == 10_000
    truth = await db_tally(stack, poll)
    assert sum(truth.values()) == 10_000
    async with aiohttp.ClientSession() as http:

        async def tallies_equal() -> bool:
            return await api_tally(http, stack, poll) == truth

        await eventually(tallies_equal, 15, "tallies equal to Postgres")


async def test_a_poison_row_is_isolated_and_its_message_dead_lettered(db_stack: Stack) -> None:
    stack = db_stack
    await stack.start_api()
    writer = await stack.start_writer(QF_BATCH_MAX_WAIT_S="1")
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    items = [vote_item(poll, i % 3, f"v{i}") for i in range(300)]
    # a rule only the database knows (the writer checks items against the route table,
    # which allows this one): the row is isolated by the insert itself
    conn = await asyncpg.connect(stack.env["QF_DATABASE_URL"])
    try:
        await conn.execute("ALTER TABLE votes ADD CONSTRAINT no_poison CHECK (voter <> 'poison')")
    finally:
        await conn.close()
    items[137]["voter"] = "poison"
    bodies = [
        encode_ingest(IngestMessage(route="vote", items=items[i : i + 30]))
        for i in range(0, 300, 30)
    ]
    await send_raw(stack, bodies)

    async def others_stored() -> bool:
        return await db_rows(stack, poll) == 299

    await eventually(others_stored, 20, "the other 299 rows committed")
    settings = stack.settings()
    async with open_client(settings) as sqs:
        dlq = await QueueOps.open(sqs, settings.dlq_name(settings.queue_ingest), 0)

        async def dead_lettered() -> bool:
            return await dlq.backlog() == 1

        await eventually(dead_lettered, 30, "the poison message in the DLQ")
    assert await db_rows(stack, poll) == 299
    assert (
        await metric(writer.metrics_url, "queuefront_ingest_poison_messages_total", final="true")
        >= 1
    )
    # retried, not dropped: rejected on every receive until SQS moved it (3 receives on
    # SQS; 2 on the emulator, whose ChangeMessageVisibility also bumps the receive count)
    assert await metric(writer.metrics_url, "queuefront_ingest_poison_rows_total") >= 2

    # redrive puts it back on its queue (where it would fail again until fixed)
    writer.stop()
    code, out = await stack.run_module("queuefront.admin", "redrive")
    assert code == 0, out
    assert '"moved": 1' in out
    async with open_client(settings) as sqs:
        dlq = await QueueOps.open(sqs, settings.dlq_name(settings.queue_ingest), 0)
        ingest = await QueueOps.open(sqs, settings.queue_ingest, 0)
        assert await dlq.backlog() == 0
        assert await ingest.backlog() == 1


async def test_postgres_unreachable_for_10_s_loses_nothing(db_stack: Stack) -> None:
    stack = db_stack
    direct = stack.env["QF_DATABASE_URL"]
    proxy = TcpProxy(5432)
    await proxy.start()
    proxied = direct.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    await stack.start_api()
    writer = await stack.start_writer(QF_DATABASE_URL=proxied, **WRITER_FAST)
    readyz = writer.metrics_url.replace("/metrics", "/readyz")
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    await vote_all(stack, poll, 500)

    async def first_half() -> bool:
        return await db_rows(stack, poll) == 500

    await eventually(first_half, 20, "first 500 stored")
    await proxy.cut()
    cut_at = time.monotonic()
    await vote_all(stack, poll, 500)  # acknowledged while Postgres is unreachable
    async with aiohttp.ClientSession() as http:

        async def not_ready() -> bool:
            async with http.get(readyz) as resp:
                return resp.status == 503 and "postgres" in (await resp.json())["down"]

        await eventually(not_ready, 8, "writer /readyz reports postgres down")
        await asyncio.sleep(max(0.0, 10 - (time.monotonic() - cut_at)))
        assert await db_rows(stack, poll) == 500
        await proxy.start()

        async def all_stored() -> bool:
            return await db_rows(stack, poll) >= 1000

        await eventually(all_stored, 40, "all 1000 stored after Postgres came back")

        async def ready() -> bool:
            async with http.get(readyz) as resp:
                return resp.status == 200

        await eventually(ready, 10, "writer ready again")
        assert await db_rows(stack, poll) == 1000

        # a batch whose tally could not be applied at once (Postgres came back while it
        # committed) is applied by the outbox sweep: equal, eventually, never more
        async def tallies_match() -> bool:
            api, db = await api_tally(http, stack, poll), await db_tally(stack, poll)
            assert all(api.get(k, 0) <= n for k, n in db.items()), (api, db)
            return api == db

        await eventually(tallies_match, 45, "the live tally equals the table")
    assert await metric(writer.metrics_url, "queuefront_writer_db_retries_total") >= 1
    await proxy.cut()



async def test_idempotency_keys(db_stack: Stack, backend_url: str) -> None:
    stack = db_stack
    await stack.start_api()
    await stack.start_worker()
    writer = await stack.start_writer(**WRITER_FAST)
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    key = uuid.uuid4().hex

    async def one_row() -> bool:
        return await db_rows(stack, poll) == 1

    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        # ingest: three tries with one key are one row; the retries come once the first
        # try is stored, so each reaches the writer in a later batch than the row
        ids = []
        for attempt in range(3):
            async with http.post(
                f"/api/polls/{poll}/votes",
                json={"choice": 3, "voter": "v"},
                headers={"Idempotency-Key": key},
            ) as resp:
                assert resp.status == 202
                ids.append((await resp.json())["id"])
            if attempt == 0:
                await eventually(one_row, 10, "the first try stored")
        assert len(set(ids)) == 1

        # proxy: three tries with one key are one backend call, same answer; the path is
        # this test's own, so the backend's count of it sees every call
        order = uuid.uuid4().hex
        bodies = []
        for i in range(3):
            async with http.post(
                f"/api/orders/{order}",
                data=b'{"qty": 1}',
                headers={"Idempotency-Key": order},
            ) as resp:
                assert resp.status == 200
                bodies.append(await resp.read())
                assert (resp.headers.get("Idempotent-Replayed") == "true") == (i > 0)
        assert len(set(bodies)) == 1

        # a duplicate while the first is still in flight: 409
        slow = uuid.uuid4().hex
        first = asyncio.create_task(
            http.post(
                f"/api/orders/{slow}",
                headers={"Idempotency-Key": slow, "X-Demo-Delay-Ms": "800"},
            )
        )
        await asyncio.sleep(0.3)
        async with http.post(f"/api/orders/{slow}", headers={"Idempotency-Key": slow}) as resp:
            assert resp.status == 409
            assert (await resp.json())["error"] == "conflict"
        response = await first
        assert response.status == 200
        response.release()

    async def all_received() -> bool:
        items = await metric(writer.metrics_url, "queuefront_ingest_items_per_message_sum")
        return items == 3

    await eventually(all_received, 10, "the three tries received by the writer")
    await asyncio.sleep(0.5)
    assert await db_rows(stack, poll) == 1
    async with aiohttp.ClientSession() as http:
        # ...counted once, too
        assert await api_tally(http, stack, poll) == {3: 1}
    assert await metric(writer.metrics_url, "queuefront_ingest_duplicates_total") == 2
    assert await backend_calls(backend_url, f"POST /orders/{order}") == 1
    assert await backend_calls(backend_url, f"POST /orders/{slow}") == 1


async def test_bad_ingest_bodies_get_400_naming_the_problem(db_stack: Stack) -> None:
    stack = db_stack
    await stack.start_api()
    cases: list[tuple[bytes, str]] = [
        (b"{not json", "not a JSON object"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"choice": "two", "voter": "v"}', "choice: expected an integer"),
        (b'{"choice": true, "voter": "v"}', "choice: expected an integer"),
        (b'{"choice": 99999999999, "voter": "v"}', "out of range"),
        (b'{"voter": "v"}', "choice: required"),
        (b'{"choice": 1, "voter": 7}', "voter: expected a string"),
        (b'{"choice": 1, "voter": "' + b"x" * 200 + b'"}', "voter: longer than 128"),
        (b'{"choice": 1, "voter": "v", "extra": 1}', "unknown fields: extra"),
        # a tallied field takes only the values its route allows: a hash field each
        (b'{"choice": 100, "voter": "v"}', "out of range (at most 99)"),
        (b'{"choice": -1, "voter": "v"}', "out of range (at least 0)"),
        (b'{"choice": 1, "voter": "a\\u0000b"}', "NUL characters"),
        # deeper than the decoder's own stack: refused, not a 500
        (b'{"choice": 1, "voter": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested deeper"),
    ]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        for body, problem in cases:
            async with http.post("/api/polls/p1/votes", data=body) as resp:
                payload = await resp.json()
                assert resp.status == 400, (body, payload)
                assert payload["error"] == "bad_request"
                assert problem in payload["message"], (body, payload)
                assert payload["request_id"] == resp.headers["X-Request-Id"]
        # one bad item never sinks good ones: the next good vote is accepted
        async with http.post("/api/polls/p1/votes", json={"choice": 1, "voter": "ok"}) as resp:
            assert resp.status == 202


async def test_reconcile_rebuilds_tallies_from_postgres(db_stack: Stack, redis: Redis) -> None:
    stack = db_stack
    await stack.start_api()
    await stack.start_writer(**WRITER_FAST)
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    await vote_all(stack, poll, 60, choices=3)

    async def stored() -> bool:
        return await db_rows(stack, poll) == 60

    await eventually(stored, 15, "60 rows")
    keys = Keys(stack.settings().key_prefix)
    await redis.hset(keys.tally("vote", poll), mapping={"0": 999, "7": 5})  # drifted
    code, out = await stack.run_module("queuefront.admin", "reconcile")
    assert code == 0, out
    async with aiohttp.ClientSession() as http:
        assert await api_tally(http, stack, poll) == {0: 20, 1: 20, 2: 20}


async def test_sigterm_flushes_or_releases_the_batch_in_hand(db_stack: Stack) -> None:
    stack = db_stack
    await stack.start_api()
    writer = await stack.start_writer(QF_BATCH_MAX_WAIT_S="5", QF_BATCH_SIZE="300")
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    await vote_all(stack, poll, 120)
    await asyncio.sleep(0.5)  # the writer is gathering a batch that waits for company
    writer.signal(signal.SIGTERM)
    assert await asyncio.to_thread(writer.popen.wait, 25) == 0
    settings = stack.settings()
    async with open_client(settings) as sqs:
        ingest = await QueueOps.open(sqs, settings.queue_ingest, 0)
        attrs = await ingest.attributes("ApproximateNumberOfMessagesNotVisible")
        assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    await stack.start_writer(**WRITER_FAST)

    async def all_stored() -> bool:
        return await db_rows(stack, poll) == 120

    await eventually(all_stored, 20, "every acknowledged vote stored")


async def outbox_rows(stack: Stack) -> int:
    conn = await asyncpg.connect(stack.env["QF_DATABASE_URL"])
    try:
        return int(await conn.fetchval("SELECT count(*) FROM tally_outbox"))
    finally:
        await conn.close()


async def test_deltas_committed_but_never_applied_are_swept_in_once(db_stack: Stack) -> None:
    """A writer that died between its commit and its Redis update: the next writer's
    start-up sweep applies the outbox row, exactly once — and a writer that died after
    its Redis update but before deleting the row has it replayed, without effect."""
    stack = db_stack
    await stack.start_api()
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    keys = Keys(stack.settings().key_prefix)
    tally_key = keys.tally("vote", poll)
    batch_id = uuid.uuid4()
    outbox_row = (
        "INSERT INTO tally_outbox (batch_id, deltas) VALUES ($1, $2::jsonb)",
        batch_id,
        f'{{"{tally_key}": {{"1": 2, "2": 1}}}}',
    )
    conn = await asyncpg.connect(stack.env["QF_DATABASE_URL"])
    try:
        async with conn.transaction():  # what the dead writer committed
            for i, choice in enumerate([1, 1, 2]):
                await conn.execute(
                    "INSERT INTO votes (id, received_at, poll_id, choice, voter)"
                    " VALUES ($1, now(), $2, $3, $4)",
                    uuid.uuid4(),
                    poll,
                    choice,
                    f"v{i}",
                )
            await conn.execute(*outbox_row)
    finally:
        await conn.close()
    first = await stack.start_writer()
    async with aiohttp.ClientSession() as http:

        async def applied() -> bool:
            return await api_tally(http, stack, poll) == {1: 2, 2: 1}

        await eventually(applied, 10, "outbox applied at start-up")

        async def deleted() -> bool:
            return await outbox_rows(stack) == 0

        await eventually(deleted, 5, "outbox row deleted once applied")
        first.stop()
        # the same row again, as a writer leaves it when it dies between applying the
        # deltas to Redis and deleting the row: the next sweep must see it and skip it
        conn = await asyncpg.connect(stack.env["QF_DATABASE_URL"])
        try:
            await conn.execute(*outbox_row)
        finally:
            await conn.close()
        await stack.start_writer()
        await eventually(deleted, 10, "the replayed row swept")
        assert await api_tally(http, stack, poll) == {1: 2, 2: 1}


async def test_retries_with_one_key_in_one_batch_count_once(db_stack: Stack) -> None:
    """A client's three tries with one Idempotency-Key, all in the writer's first batch:
    one row, and the tally counts that row once."""
    stack = db_stack
    await stack.start_api()
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    key = uuid.uuid4().hex
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        for _ in range(3):
            async with http.post(
                f"/api/polls/{poll}/votes",
                json={"choice": 3, "voter": "v"},
                headers={"Idempotency-Key": key},
            ) as resp:
                assert resp.status == 202
        for voter in ("w", "x"):
            async with http.post(
                f"/api/polls/{poll}/votes", json={"choice": 1, "voter": voter}
            ) as resp:
                assert resp.status == 202
    # the writer starts only now: every try is waiting in the queue for its first batch
    writer = await stack.start_writer(QF_BATCH_MAX_WAIT_S="1")

    async def stored() -> bool:
        return await db_rows(stack, poll) == 3

    await eventually(stored, 15, "three rows (one per distinct vote)")
    assert await metric(writer.metrics_url, "queuefront_ingest_commits_total") == 1
    async with aiohttp.ClientSession() as http:

        async def tallied() -> bool:
            return bool(await api_tally(http, stack, poll))

        await eventually(tallied, 5, "the tally applied")
        assert await api_tally(http, stack, poll) == {3: 1, 1: 2} == await db_tally(stack, poll)
