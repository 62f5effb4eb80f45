"""The lean SQS data plane against the real emulator (JSON protocol): every hot call,
per-entry failures, whole-call errors with the same exception as aiobotocore's, and a
frozen endpoint answered within the configured timeouts and attempts."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from devstack import Proc, eventually, free_port, start_emulator
from queuefront.settings import Settings
from queuefront.sqs import (
    Message,
    QueueOps,
    SendUnknown,
    SQSEntryError,
    data_plane_of,
    open_client,
)
from queuefront.sqswire import SQSWire


async def has_backlog(ops: QueueOps, count: int) -> bool:
    return await ops.backlog() == count


def lean_settings(endpoint: str) -> Settings:
    return Settings(sqs_endpoint_url=endpoint, sqs_data_plane="lean")


@pytest.fixture
async def lean(sqs_endpoint: str) -> AsyncIterator[tuple[Any, QueueOps]]:
    """A lean client and the QueueOps of a queue of the test's own."""
    async with open_client(lean_settings(sqs_endpoint)) as client:
        name = f"qft-wire-{uuid.uuid4().hex[:8]}"
        url = (await client.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "60"}))[
            "QueueUrl"
        ]
        ops = await QueueOps.open(client, name, 0.001)
        # the calls below must go over the wire, not through aiobotocore
        assert isinstance(getattr(data_plane_of(client), "__self__", None), SQSWire)
        try:
            yield client, ops
        finally:
            await ops.close()
            await client.delete_queue(QueueUrl=url)


async def test_send_receive_extend_release_delete_and_attributes(
    lean: tuple[Any, QueueOps],
) -> None:
    _, ops = lean
    bodies = [f"message {i} é ✓ " + "x" * i for i in range(13)]  # two batches, non-ASCII
    before = time.time()
    ids = await asyncio.gather(*(ops.send(b) for b in bodies))
    assert len(set(ids)) == 13 and all(ids)
    # the emulator counts a just-sent message as delayed for a moment
    await eventually(lambda: has_backlog(ops, 13), 5, "13 messages visible")
    assert (await ops.attributes("VisibilityTimeout"))["VisibilityTimeout"] == "60"

    received: list[Message] = []
    while len(received) < 13:
        got = await ops.receive(10, 0)
        assert got, "messages went missing"
        received += got
    assert sorted(m.body for m in received) == sorted(bodies)
    assert {m.message_id for m in received} == set(ids)
    assert all(m.receive_count == 1 for m in received)
    assert all(before - 1 <= m.sent_at <= time.time() + 1 for m in received)
    in_flight = "ApproximateNumberOfMessagesNotVisible"
    assert (await ops.attributes(in_flight))[in_flight] == "13"

    # extend some, release the others: only the released come back
    keep, back = received[:6], received[6:]
    await asyncio.gather(*(ops.change_visibility(m.receipt_handle, 60) for m in keep))
    await asyncio.gather(*(ops.change_visibility(m.receipt_handle, 0) for m in back))
    again: list[Message] = []
    while len(again) < len(back):
        got = await ops.receive(10, 0)
        assert got, "released messages did not come back"
        again += got
    assert sorted(m.body for m in again) == sorted(m.body for m in back)
    # received again (this emulator counts the release as a receive too: 3, as it does
    # through aiobotocore)
    assert all(m.receive_count >= 2 for m in again)

    await asyncio.gather(*(ops.delete(m.receipt_handle) for m in keep + again))
    attrs = await ops.attributes(
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"
    )
    assert attrs == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }


async def test_responses_match_aiobotocore_s(lean: tuple[Any, QueueOps]) -> None:
    """The same calls through both planes decode to the same data (botocore adds only
    its ResponseMetadata)."""
    client, ops = lean
    wire = data_plane_of(client)
    send: dict[str, Any] = {"QueueUrl": ops.url, "Entries": [{"Id": "a", "MessageBody": "same"}]}
    for resp in (
        await wire("SendMessageBatch", send),
        await client.send_message_batch(**send),
    ):
        assert set(resp) - {"ResponseMetadata"} == {"Successful"}
        assert set(resp["Successful"][0]) == {"Id", "MessageId", "MD5OfMessageBody"}
    names = ["All"]
    lean_attrs = await wire("GetQueueAttributes", {"QueueUrl": ops.url, "AttributeNames": names})
    boto_attrs = await client.get_queue_attributes(QueueUrl=ops.url, AttributeNames=names)
    assert set(lean_attrs["Attributes"]) == set(boto_attrs["Attributes"])
    for fixed in ("QueueArn", "VisibilityTimeout", "MaximumMessageSize", "CreatedTimestamp"):
        assert lean_attrs["Attributes"][fixed] == boto_attrs["Attributes"][fixed]
    receive: dict[str, Any] = {
        "QueueUrl": ops.url,
        "MaxNumberOfMessages": 1,
        "AttributeNames": ["All"],
    }
    lean_msg = (await wire("ReceiveMessage", receive))["Messages"][0]
    boto_msg = (await client.receive_message(**receive))["Messages"][0]
    assert set(lean_msg) == set(boto_msg)
    assert set(lean_msg["Attributes"]) == set(boto_msg["Attributes"])


async def test_a_bad_receipt_handle_fails_only_its_own_entry(lean: tuple[Any, QueueOps]) -> None:
    _, ops = lean
    await asyncio.gather(ops.send("one"), ops.send("two"))
    first, second = sorted(await ops.receive(10, 0), key=lambda m: m.body)
    outcomes = await asyncio.gather(
        ops.change_visibility(first.receipt_handle, 0),
        ops.change_visibility("not-a-receipt-handle", 0),
        return_exceptions=True,
    )
    assert outcomes[0] is None
    assert isinstance(outcomes[1], SQSEntryError) and outcomes[1].code == "ReceiptHandleIsInvalid"
    outcomes = await asyncio.gather(
        ops.delete(second.receipt_handle),
        ops.delete("not-a-receipt-handle"),
        return_exceptions=True,
    )
    assert outcomes[0] is None
    assert isinstance(outcomes[1], SQSEntryError) and outcomes[1].code == "ReceiptHandleIsInvalid"
    # the good entries did what they said: "one" is back, "two" is gone
    back = await ops.receive(10, 0)
    assert [m.body for m in back] == ["one"]


async def test_a_missing_queue_raises_the_client_error_aiobotocore_raises(
    lean: tuple[Any, QueueOps],
) -> None:
    client, ops = lean
    gone_url = ops.url.rsplit("/", 1)[0] + f"/qft-missing-{uuid.uuid4().hex[:8]}"
    gone = QueueOps(client, "missing", gone_url, 0.001)
    try:
        with pytest.raises(ClientError) as lean_err:
            await gone.send("lost")
        with pytest.raises(ClientError) as backlog_err:
            await gone.backlog()
        with pytest.raises(ClientError) as receive_err:
            await gone.receive(10, 0)
    finally:
        await gone.close()
    with pytest.raises(ClientError) as boto_err:
        await client.send_message_batch(
            QueueUrl=gone_url, Entries=[{"Id": "0", "MessageBody": "lost"}]
        )
    for err in (lean_err, backlog_err, receive_err):
        assert type(err.value) is type(boto_err.value) is client.exceptions.QueueDoesNotExist
        error = err.value.response["Error"]
        assert error["Code"] == boto_err.value.response["Error"]["Code"]
        assert error["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
        assert error["QueryErrorCode"] == "QueueDoesNotExist"
        assert error["Message"] == boto_err.value.response["Error"]["Message"]
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.fixture
async def own_emulator(log_dir: Path) -> AsyncIterator[tuple[str, Proc]]:
    """An emulator of the test's own, which it may freeze."""
    url, proc = await start_emulator(log_dir)
    try:
        yield url, proc
    finally:
        proc.signal(signal.SIGCONT)
        proc.stop()


@pytest.mark.parametrize("attempts", [1, 2])
async def test_a_frozen_endpoint_fails_within_the_timeouts_and_attempts(
    own_emulator: tuple[str, Proc], attempts: int
) -> None:
    """SIGSTOP: connections are accepted by the kernel, nothing answers. Each attempt
    gives up after the read timeout; the call fails after exactly ``attempts`` of them
    (plus back-off of at most 50 ms) with botocore's ReadTimeoutError. A send is the
    exception: tried once whatever ``attempts`` says (SQS may have carried it out), it
    fails with SendUnknown after one read timeout of its own."""
    url, emulator = own_emulator
    read_s = 0.4
    async with open_client(
        lean_settings(url),
        connect_timeout_s=0.3,
        read_timeout_s=read_s,
        attempts=attempts,
        send_read_timeout_s=read_s,
    ) as client:
        name = f"qft-frozen-{uuid.uuid4().hex[:8]}"
        await client.create_queue(QueueName=name)
        ops = await QueueOps.open(client, name, 0.001)
        assert await ops.backlog() == 0  # a pooled connection, and the path works
        emulator.signal(signal.SIGSTOP)
        try:
            for call in (ops.backlog, lambda: ops.receive(10, 0)):
                started = time.monotonic()
                with pytest.raises(ReadTimeoutError) as err:
                    await call()
                elapsed = time.monotonic() - started
                # what the api and the consumers catch: a BotoCoreError, an OSError too
                assert isinstance(err.value, BotoCoreError | OSError | TimeoutError)
                assert attempts * read_s - 0.05 <= elapsed <= attempts * read_s + 0.35, elapsed
            started = time.monotonic()
            with pytest.raises(SendUnknown) as unknown:
                await ops.send("frozen")
            elapsed = time.monotonic() - started
            assert isinstance(unknown.value.cause, ReadTimeoutError)
            assert read_s - 0.05 <= elapsed <= read_s + 0.35, elapsed
        finally:
            emulator.signal(signal.SIGCONT)
            await ops.close()
        assert await ops.backlog() >= 0  # answers again once thawed


async def test_a_closed_port_fails_fast_with_a_connection_error() -> None:
    port = free_port()  # bound and released: nobody listens on it
    settings = lean_settings(f"http://127.0.0.1:{port}")
    async with open_client(
        settings, connect_timeout_s=0.5, read_timeout_s=0.5, attempts=2
    ) as client:
        ops = QueueOps(client, "nowhere", f"http://127.0.0.1:{port}/123456789012/nowhere")
        started = time.monotonic()
        with pytest.raises(EndpointConnectionError):
            await ops.backlog()
        # refused at once, twice (attempts), with a back-off of at most 50 ms between
        assert time.monotonic() - started < 0.3
