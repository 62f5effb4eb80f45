"""SQS as it really behaves, in front of the real emulator (``devstack.sqsfaults``): late
acknowledgements, lost answers, refused entries, throttling and the character rule —
on both data planes, and seen from outside through the api, the worker and the writer.

What must hold: a slow acknowledgement is not a failure; a send whose answer was lost
is never re-sent blindly (a standard queue would hold it twice); nothing runs twice,
no vote counts twice; one client's characters never fail another client's item.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from botocore.exceptions import ClientError
from redis.asyncio import Redis

from devstack import Stack, backend_calls, eventually
from devstack.sqsfaults import SQSFaults, start_sqs_faults
from queuefront.envelope import RequestEnvelope
from queuefront.keys import Keys
from queuefront.settings import Settings
from queuefront.sqs import (
    API_ATTEMPTS,
    API_CONNECT_TIMEOUT_S,
    API_READ_TIMEOUT_S,
    QueueOps,
    SendUnknown,
    SQSEntryError,
    open_client,
)
from service.tombstone import settle
from tests.integration.rawhttp import raw_request
from tests.integration.test_ingest import WRITER_FAST, api_tally, db_rows
from workers.priority.handback import HandBack

PLANES = ["lean", "botocore"]


@pytest.fixture(scope="module")
async def faults(sqs_endpoint: str, log_dir: Path) -> AsyncIterator[SQSFaults]:
    """The stand-in, in front of the session's emulator (each test sets its own rules
    and matches on text of its own)."""
    handle, proc = await start_sqs_faults(log_dir, sqs_endpoint)
    try:
        yield handle
    finally:
        proc.stop()


@pytest.fixture
async def ops(faults: SQSFaults, request: pytest.FixtureRequest) -> AsyncIterator[QueueOps]:
    """A queue of the test's own through the stand-in, on a client configured like the
    api's (1 s read timeout, 2 attempts); the data plane is the test's parameter."""
    settings = Settings(sqs_endpoint_url=faults.url, sqs_data_plane=request.param)
    async with open_client(
        settings,
        connect_timeout_s=API_CONNECT_TIMEOUT_S,
        read_timeout_s=API_READ_TIMEOUT_S,
        attempts=API_ATTEMPTS,
    ) as client:
        name = f"qft-rules-{uuid.uuid4().hex[:8]}"
        url = (await client.create_queue(QueueName=name))["QueueUrl"]
        queue = await QueueOps.open(client, name, 0.001)
        try:
            yield queue
        finally:
            await queue.close()
            await client.delete_queue(QueueUrl=url)


@pytest.fixture
async def through(faults: SQSFaults, stack: Stack) -> AsyncIterator[Stack]:
    """The stack's processes talk to SQS through the stand-in (its queues exist: the
    stand-in passes every call through to the same emulator). Put back before the
    stack's own clean-up, which deletes the queues."""
    original = stack.env["QF_SQS_ENDPOINT_URL"]
    stack.env["QF_SQS_ENDPOINT_URL"] = faults.url
    try:
        yield stack
    finally:
        stack.stop_all()
        stack.env["QF_SQS_ENDPOINT_URL"] = original


@pytest.fixture
async def through_db(faults: SQSFaults, db_stack: Stack) -> AsyncIterator[Stack]:
    """``through``, with a database of the stack's own."""
    original = db_stack.env["QF_SQS_ENDPOINT_URL"]
    db_stack.env["QF_SQS_ENDPOINT_URL"] = faults.url
    try:
        yield db_stack
    finally:
        db_stack.stop_all()
        db_stack.env["QF_SQS_ENDPOINT_URL"] = original


async def backlog_is(queue: QueueOps, count: int) -> bool:
    return await queue.backlog() == count


# --- the data planes ---------------------------------------------------------------------


@pytest.mark.parametrize("ops", PLANES, indirect=True)
async def test_a_late_acknowledgement_is_awaited_and_not_re_sent(
    ops: QueueOps, faults: SQSFaults
) -> None:
    """SQS takes the message and answers 1.5 s later, past the client's 1 s read
    timeout: the send waits for that answer, and the queue holds one message."""
    body = f"late-{uuid.uuid4().hex}"
    await faults.configure({"operation": "SendMessageBatch", "match": body, "delay_s": 1.5})
    started = time.monotonic()
    message_id = await ops.send(body)
    assert message_id and time.monotonic() - started >= 1.4
    assert (await faults.seen(body))["received"] == 1
    await eventually(lambda: backlog_is(ops, 1), 5, "one message on the queue")
    await asyncio.sleep(0.5)
    assert await ops.backlog() == 1


@pytest.mark.parametrize("ops", PLANES, indirect=True)
async def test_a_lost_answer_is_unknown_and_never_re_sent(ops: QueueOps, faults: SQSFaults) -> None:
    """SQS takes the message and the connection drops before its answer: the send says
    the outcome is unknown, and neither data plane sends it again."""
    body = f"cut-{uuid.uuid4().hex}"
    await faults.configure({"operation": "SendMessageBatch", "match": body, "cut": True})
    with pytest.raises(SendUnknown):
        await ops.send(body)
    assert (await faults.seen(body))["received"] == 1
    await eventually(lambda: backlog_is(ops, 1), 5, "the message SQS took")


@pytest.mark.parametrize("ops", PLANES, indirect=True)
async def test_throttling_is_retried_in_either_shape(ops: QueueOps, faults: SQSFaults) -> None:
    """SQS's own RequestThrottled (with its query-protocol header) and the front end's
    ThrottlingException: both read as throttling, retried, and the send succeeds."""
    for shape in ("RequestThrottled", "ThrottlingException"):
        body = f"throttled-{uuid.uuid4().hex}"
        await faults.configure(
            {"operation": "SendMessageBatch", "match": body, "error": shape, "times": 1}
        )
        assert await ops.send(body)
        assert (await faults.seen(body))["received"] == 1  # the refused call sent nothing
    await eventually(lambda: backlog_is(ops, 2), 5, "both messages")


@pytest.mark.parametrize("ops", ["lean"], indirect=True)
async def test_a_retried_entry_fails_alone(ops: QueueOps, faults: SQSFaults) -> None:
    """One entry of a batch is refused for a reason of SQS's own and its retries are
    throttled: it fails; its batch-mates, which SQS took at the first call, keep their
    message ids."""
    tag = uuid.uuid4().hex
    await faults.configure(
        {
            "operation": "SendMessageBatch",
            "match": f"flaky-{tag}",
            "entry_error": {"code": "InternalError", "sender_fault": False},
            "times": 1,
        },
        {
            "operation": "SendMessageBatch",
            "match": f"flaky-{tag}",
            "skip": 1,
            "error": "ThrottlingException",
        },
    )
    results = await asyncio.gather(
        ops.send(f"keep-a-{tag}"),
        ops.send(f"flaky-{tag}"),
        ops.send(f"keep-c-{tag}"),
        return_exceptions=True,
    )
    assert isinstance(results[0], str) and isinstance(results[2], str), results
    assert isinstance(results[1], ClientError), results
    assert (await faults.seen(f"flaky-{tag}"))["received"] == 1  # the retries were refused
    await eventually(lambda: backlog_is(ops, 2), 5, "the two messages SQS took")


@pytest.mark.parametrize("ops", ["lean"], indirect=True)
async def test_a_forbidden_character_fails_only_its_own_entry(
    ops: QueueOps, faults: SQSFaults
) -> None:
    """The stand-in applies SQS's character rule per entry, as SQS reports it."""
    await faults.configure()
    results = await asyncio.gather(
        ops.send("fine-1"), ops.send("bad \uffff"), ops.send("fine-2"), return_exceptions=True
    )
    assert isinstance(results[0], str) and isinstance(results[2], str), results
    bad = results[1]
    assert isinstance(bad, SQSEntryError), results
    assert bad.code == "InvalidMessageContents" and bad.sender_fault


@pytest.mark.parametrize("ops", ["lean"], indirect=True)
async def test_batches_stay_within_sqs_s_mebibyte(ops: QueueOps, faults: SQSFaults) -> None:
    """SQS refuses a SendMessageBatch whose bodies total more than 1 MiB, every entry
    with it (BatchRequestTooLong). Three messages of 400 kB — two-byte characters, so
    counted in bytes, not characters — go in batches that fit."""
    await faults.configure()
    tag = uuid.uuid4().hex
    bodies = [f"{tag}-{i}-" + "\u00e9" * 200_000 for i in range(3)]
    ids = await asyncio.gather(*(ops.send(b) for b in bodies))
    assert len(set(ids)) == 3
    assert (await faults.seen(tag))["forwarded"] == 3


# --- the tombstone and the worker's claim --------------------------------------------------


def envelope(request_id: str) -> RequestEnvelope:
    now = time.time()
    return RequestEnvelope(
        id=request_id,
        route="order",
        method="POST",
        path="/orders/x",
        reply_to="nowhere",
        deadline=now + 10,
        enqueued_at=now,
    )


async def test_a_tombstone_never_lands_on_a_claimed_request(redis: Redis) -> None:
    """Both orders of the api's settling and the worker's claim, on real Redis: a claim
    first means the api waits for the reply; a tombstone first means the worker finds a
    reply and never calls the backend."""
    keys = Keys(f"qft:{uuid.uuid4().hex[:10]}:")
    handback = HandBack(redis, keys, "worker-1", reply_ttl_s=60)
    try:
        first = uuid.uuid4().hex
        assert (await handback.claim(envelope(first))).outcome == "mine"
        settled = await settle(redis, keys, first, reply_ttl_s=60, seconds_left=10)
        assert settled.outcome == "claimed"
        assert await redis.get(keys.reply(first)) is None  # no tombstone under the worker

        second = uuid.uuid4().hex
        settled = await settle(redis, keys, second, reply_ttl_s=60, seconds_left=10)
        assert settled.outcome == "tombstoned"
        assert (await handback.claim(envelope(second))).outcome == "replied"
        # the tombstone outlives the deadline by the claims' grace, whatever the reply TTL
        assert await redis.ttl(keys.reply(second)) > 60
    finally:
        await handback.close()
        names = [k async for k in redis.scan_iter(match=f"{keys.prefix}*")]
        if names:
            await redis.delete(*names)


# --- through the api -------------------------------------------------------------------


async def post(
    http: aiohttp.ClientSession, path: str, body: bytes, **headers: str
) -> tuple[int, bytes, bool]:
    async with http.post(path, data=body, headers=headers) as resp:
        return resp.status, await resp.read(), resp.headers.get("Idempotent-Replayed") == "true"


# the data planes' own tests above cover botocore's late answers; one run through it here
@pytest.mark.parametrize(("plane", "ack_s"), [("lean", 1.5), ("lean", 3.5), ("botocore", 3.5)])
async def test_a_slow_acknowledgement_is_not_a_failure(
    through: Stack, faults: SQSFaults, backend_url: str, plane: str, ack_s: float
) -> None:
    """SQS takes the request at once and acknowledges it ``ack_s`` later — inside the
    api's wait for SQS (2.5 s), or past it while the worker's backend call still runs.
    Either way: 200, one backend call, one message, and the keyed retry replays."""
    stack = through
    stack.env["QF_SQS_DATA_PLANE"] = plane
    await stack.start_api()
    await stack.start_worker()
    order = f"slow-ack-{uuid.uuid4().hex}"
    await faults.configure({"operation": "SendMessageBatch", "match": order, "delay_s": ack_s})
    path = f"/api/orders/{order}"
    headers = {"Idempotency-Key": uuid.uuid4().hex, "X-Demo-Delay-Ms": "3000"}
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        status, body, replayed = await post(http, path, b"order", **headers)
        assert (status, replayed) == (200, False), body
        again = await post(http, path, b"order", **headers)
        assert again == (200, body, True)
    await asyncio.sleep(0.5)
    assert await backend_calls(backend_url, f"POST /orders/{order}") == 1
    assert (await faults.seen(order))["received"] == 1


async def test_a_lost_acknowledgement_still_answers_with_the_reply(
    through: Stack, faults: SQSFaults, backend_url: str
) -> None:
    """SQS takes the request and the connection drops before its answer: the api does
    not know, does not send it again, and answers with the worker's reply."""
    stack = through
    await stack.start_api()
    await stack.start_worker()
    order = f"cut-{uuid.uuid4().hex}"
    await faults.configure({"operation": "SendMessageBatch", "match": order, "cut": True})
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        status, body, _ = await post(http, f"/api/orders/{order}", b"order")
    assert status == 200, body
    assert await backend_calls(backend_url, f"POST /orders/{order}") == 1
    assert (await faults.seen(order))["received"] == 1


@pytest.mark.parametrize("fault", ["slow", "cut"])
async def test_a_vote_whose_acknowledgement_is_slow_or_lost_counts_once(
    through_db: Stack, faults: SQSFaults, fault: str
) -> None:
    """A keyless vote: SQS answers 1.5 s late, or takes it and the answer is lost (the
    api then sends the same item again: SQS holds it twice). Either way 202, one row,
    one count."""
    stack = through_db
    await stack.start_api()
    await stack.start_writer(**WRITER_FAST)
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    voter = f"voter-{uuid.uuid4().hex}"
    rule: dict[str, Any] = {"operation": "SendMessageBatch", "match": voter, "times": 1}
    rule.update({"delay_s": 1.5} if fault == "slow" else {"cut": True})
    await faults.configure(rule)
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        vote = {"choice": 3, "voter": voter}
        async with http.post(f"/api/polls/{poll}/votes", json=vote) as resp:
            assert resp.status == 202, await resp.text()

        async def stored() -> bool:
            return await db_rows(stack, poll) >= 1

        await eventually(stored, 15, "the vote stored")
        await asyncio.sleep(1.5)  # a second copy would be stored and counted by now
        assert await db_rows(stack, poll) == 1
        assert await api_tally(http, stack, poll) == {3: 1}
    sent = (await faults.seen(voter))["received"]
    assert sent == (1 if fault == "slow" else 2)


# --- SQS's character rule ----------------------------------------------------------------


async def test_forbidden_characters_arrive_intact_and_fail_nobody(
    through_db: Stack, faults: SQSFaults
) -> None:
    """Votes whose text holds U+FFFF / U+FFFE (refused by real SQS) packed with other
    clients' votes, and a proxied request with them in a header, the path and the body:
    every one accepted, stored and forwarded exactly as sent."""
    stack = through_db
    await stack.start_api()
    await stack.start_worker()
    await stack.start_writer(**WRITER_FAST)
    await faults.configure()  # the character rule, as real SQS applies it
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    marks = {0: "\uffff", 1: "\ufffe", 2: "x\ufffe\uffffy"}
    voters = [f"viewer-{i}" + marks.get(i % 5, "") for i in range(40)]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:

        async def vote(voter: str) -> int:
            body = {"choice": 1, "voter": voter}
            async with http.post(f"/api/polls/{poll}/votes", json=body) as resp:
                return resp.status

        assert await asyncio.gather(*(vote(v) for v in voters)) == [202] * len(voters)

        order = f"chars-{uuid.uuid4().hex}-\uffff"
        data = "body \ufffe\uffff".encode()
        note = {"X-Note": "a\uffff"}
        async with http.post(f"/api/orders/{order}", data=data, headers=note) as resp:
            assert resp.status == 200, await resp.text()
            echoed = await resp.json()
        assert echoed["body"] == "body \ufffe\uffff"
        assert echoed["headers"]["X-Note"] == "a\uffff"
        assert echoed["path"] == f"/orders/{order}"

        async def stored() -> bool:
            return await db_rows(stack, poll) >= len(voters)

        await eventually(stored, 15, "every vote stored")
        assert await api_tally(http, stack, poll) == {1: len(voters)}
    conn = await asyncpg.connect(stack.env["QF_DATABASE_URL"])
    try:
        rows = await conn.fetch("SELECT voter FROM votes WHERE poll_id = $1", poll)
    finally:
        await conn.close()
    assert sorted(r["voter"] for r in rows) == sorted(voters)


async def test_an_item_sqs_refuses_fails_alone(through_db: Stack, faults: SQSFaults) -> None:
    """SQS refuses a packed message for what one item holds (a sender fault): the items
    are sent again one per message, and only that item fails (400); every other vote in
    the message is accepted and counted."""
    stack = through_db
    await stack.start_api()
    await stack.start_writer(**WRITER_FAST)
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    poison = f"poison-{uuid.uuid4().hex}"
    await faults.configure(
        # the first message leaves alone and late, so the others gather into the next one
        {"operation": "SendMessageBatch", "delay_s": 0.5, "before": True, "times": 1},
        {
            "operation": "SendMessageBatch",
            "match": poison,
            "entry_error": {"code": "InvalidMessageContents", "sender_fault": True},
        },
    )
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:

        async def vote(voter: str) -> int:
            body = {"choice": 2, "voter": voter}
            async with http.post(f"/api/polls/{poll}/votes", json=body) as resp:
                return resp.status

        first = asyncio.create_task(vote("first"))
        await asyncio.sleep(0.1)
        voters = [f"v-{i}" for i in range(10)] + [poison] + [f"w-{i}" for i in range(10)]
        statuses = await asyncio.gather(*(vote(v) for v in voters))
        assert await first == 202
        assert statuses == [202] * 10 + [400] + [202] * 10

        async def stored() -> bool:
            return await db_rows(stack, poll) >= 21

        await eventually(stored, 15, "the 21 good votes stored")
        await asyncio.sleep(0.5)
        assert await api_tally(http, stack, poll) == {2: 21}


# --- idempotency records -----------------------------------------------------------------


async def test_a_keyed_retry_long_after_the_504_replays_the_answer(
    stack: Stack, backend_url: str, redis: Redis
) -> None:
    """A keyed request answered 504 is retried after its reply's usual life (1 s here,
    2 minutes by default): the worker's answer was kept as long as the key, so it is
    replayed and the backend is not called again; its claim, too, outlives the usual
    grace. A request answered in time keeps both only the usual while (the record holds
    the answer)."""
    stack.env["QF_REPLY_TTL_S"] = "1"
    await stack.start_api()
    await stack.start_worker()
    keys = Keys(stack.settings().key_prefix)
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        quick = f"/api/orders/in-time-{uuid.uuid4().hex}"
        async with http.post(quick, data=b"o", headers={"Idempotency-Key": "k0"}) as resp:
            assert resp.status == 200
            request_id = resp.headers["X-Request-Id"]
        assert 0 < await redis.ttl(keys.reply(request_id)) <= 1
        assert 0 < await redis.ttl(keys.claim(request_id)) <= 1

        item = uuid.uuid4().hex
        path = f"/api/quick-high/{item}"  # a 1 s window
        headers = {"Idempotency-Key": uuid.uuid4().hex, "X-Demo-Delay-Ms": "1500"}
        async with http.post(path, data=b"order", headers=headers) as resp:
            assert resp.status == 504
            first_id = resp.headers["X-Request-Id"]
        # the claim too outlives the claims' usual grace (60 s past the deadline)
        assert await redis.ttl(keys.claim(first_id)) > 120
        await asyncio.sleep(2.5)  # the worker's reply (its own 504) is past its usual life
        status, body, replayed = await post(http, path, b"order", **headers)
        assert (status, replayed) == (504, True), body
    await asyncio.sleep(1.0)
    assert await backend_calls(backend_url, f"POST /quick-high/{item}") == 1


async def test_which_backend_answers_a_key_keeps(stack: Stack, backend_url: str) -> None:
    """A 4xx that says "not done, may work later" (429, 401, 409, …) releases the key:
    the retry reaches the backend. One that answers the request as sent (422, 404, …)
    is replayed for the key's life, without a second call."""
    await stack.start_api()
    await stack.start_worker()
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        for status, replayed in [(429, False), (401, False), (409, False), (422, True)]:
            order = f"status-{status}-{uuid.uuid4().hex}"
            key = uuid.uuid4().hex
            asks = {"Idempotency-Key": key, "X-Demo-Status": str(status)}
            first = await post(http, f"/api/orders/{order}", b"o", **asks)
            assert first[0] == status
            # the retry no longer asks the demo backend for that status (headers are not
            # part of a request's fingerprint): a released key gets a fresh 200
            again = await post(http, f"/api/orders/{order}", b"o", **{"Idempotency-Key": key})
            if replayed:
                assert again == (status, first[1], True)
            else:
                assert (again[0], again[2]) == (200, False), status
            calls = await backend_calls(backend_url, f"POST /orders/{order}")
            assert calls == (1 if replayed else 2), status


async def test_header_bytes_that_are_not_text_never_give_a_500(
    stack: Stack, backend_url: str
) -> None:
    """A header value with a byte that is not UTF-8 (Latin-1 "café") is no text for a
    queue message as it stands: it is forwarded intact (read as Latin-1) or refused
    (400) — never a 500, and never a message SQS refuses."""
    await stack.start_api()
    await stack.start_worker()
    order = f"latin1-{uuid.uuid4().hex}"
    status, body = await raw_request(
        stack.api_port, "POST", f"/api/orders/{order}", [("X-Note", b"caf\xe9")], b"o"
    )
    assert status in (200, 400), body
    if status == 200:
        assert body["headers"]["X-Note"].encode("latin-1", "replace") == b"caf\xe9"
