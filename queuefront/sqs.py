"""SQS access: one client per process, and per-queue batched operations.

Why batch everything: each call costs one round trip and a fixed amount of client CPU
whatever it carries (about 1 ms through aiobotocore, 0.3 ms through the lean data plane of
``queuefront.sqswire``; ``bench/sqs_calls.py``), so a pod that sent, deleted or extended
messages one by one would spend its CPU on SQS calls instead of on requests.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from weakref import WeakKeyDictionary

from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioCredentials
from aiobotocore.session import AioSession, get_session

from queuefront import metrics
from queuefront.batcher import Batcher
from queuefront.limits import MAX_RECEIVE_MESSAGES
from queuefront.settings import Settings
from queuefront.sqswire import open_wire

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient as SQSClient
else:
    SQSClient = Any

DataPlane = Literal["lean", "botocore"]

SLOW_LINGER_S = 0.02
"""Linger of deletes and visibility changes: no client waits on them, so they wait for
fuller batches (measured: with the send linger, deletes were 17% of a worker's CPU)."""

RECEIVE_ATTRIBUTES = ("ApproximateReceiveCount", "SentTimestamp")
"""The message attributes ``Message`` is built from."""

SEND_ATTEMPTS = 3
"""Tries of a batch entry that SQS refused for a reason of its own (not the sender's)."""


class SQSEntryError(Exception):
    """One entry of a batch call failed; the other entries may have succeeded."""

    def __init__(self, operation: str, code: str, message: str) -> None:
        super().__init__(f"{operation}: {code}: {message}")
        self.code = code


@dataclass(frozen=True, slots=True)
class Message:
    body: str
    receipt_handle: str
    message_id: str
    receive_count: int
    sent_at: float
    """Unix time SQS accepted the message."""
    attributes: Mapping[str, str] = field(default_factory=dict)
    """Message attributes by name (their StringValue), when the queue asks for them
    (``QueueOps.message_attributes``): what API Gateway's SQS integration sends."""


API_CONNECT_TIMEOUT_S = 0.5
API_READ_TIMEOUT_S = 1.0
API_ATTEMPTS = 2
"""The api's client sends and reads attributes only, each well inside a request's window:
two attempts of one second at most, so SQS frozen is answered 503 within 3 s."""


@asynccontextmanager
async def open_client(
    settings: Settings,
    *,
    pool: int = 50,
    connect_timeout_s: float = 5.0,
    read_timeout_s: float | None = None,
    attempts: int = 3,
    data_plane: DataPlane | None = None,
) -> AsyncIterator[SQSClient]:
    """One client per process: creating one costs tens of milliseconds and a connection pool.

    ``read_timeout_s`` defaults to the long poll plus a margin (consumers); botocore's own
    retries (``attempts``, standard mode) count against the caller's time as well, so a
    caller with a deadline keeps them few.

    ``data_plane`` (default ``QF_SQS_DATA_PLANE``): ``lean`` sends the per-message calls of
    the ``QueueOps`` made on this client through ``queuefront.sqswire`` (same endpoint,
    region, credentials, timeouts and attempts; a fraction of the CPU, see
    ``bench/sqs_calls.py``); ``botocore`` keeps them on aiobotocore. Either way botocore's
    parameter validation is off: every call is built by this package from values it
    checked itself, SQS validates again, and validation cost a quarter of a call's CPU.
    """
    plane = data_plane or settings.sqs_data_plane
    read_s = read_timeout_s or settings.receive_wait_s + 10
    session = get_session()
    kwargs: dict[str, Any] = {
        "region_name": settings.aws_region,
        "config": AioConfig(
            max_pool_connections=pool,
            connect_timeout=connect_timeout_s,
            read_timeout=read_s,
            retries={"mode": "standard", "max_attempts": attempts},
            parameter_validation=False,
        ),
    }
    if settings.sqs_endpoint_url:
        kwargs["endpoint_url"] = settings.sqs_endpoint_url
        if not os.environ.get("AWS_ACCESS_KEY_ID"):
            # an emulator accepts any credentials; real AWS uses the default chain
            kwargs["aws_access_key_id"] = "queuefront"
            kwargs["aws_secret_access_key"] = "queuefront"
    async with session.create_client("sqs", **kwargs) as client, AsyncExitStack() as stack:
        if plane == "lean":
            wire = await stack.enter_async_context(
                open_wire(
                    endpoint_url=client.meta.endpoint_url,
                    region=client.meta.region_name,
                    credentials=await _credentials(session, kwargs),
                    exceptions=client.exceptions,
                    pool=pool,
                    connect_timeout_s=connect_timeout_s,
                    read_timeout_s=read_s,
                    attempts=attempts,
                    verify=_verify(session),
                )
            )
            _DATA_PLANES[client] = wire.call
        try:
            yield client
        finally:
            _DATA_PLANES.pop(client, None)


async def _credentials(session: AioSession, kwargs: dict[str, Any]) -> Any:
    """The credentials ``create_client`` gave the client: the explicit keys, or the
    session's (resolved once by the default chain and cached, refreshable ones included)."""
    if "aws_access_key_id" in kwargs:
        return AioCredentials(kwargs["aws_access_key_id"], kwargs["aws_secret_access_key"])
    return await session.get_credentials()


def _verify(session: AioSession) -> bool | str:
    """TLS verification as botocore resolves it for a client created without ``verify``."""
    bundle = session.get_config_variable("ca_bundle") or os.environ.get("REQUESTS_CA_BUNDLE")
    return str(bundle) if bundle else True


DataCall = Callable[[str, Mapping[str, Any]], Awaitable[Any]]
"""One data-plane call: operation name and its parameters, the decoded response."""

_DATA_PLANES: WeakKeyDictionary[Any, DataCall] = WeakKeyDictionary()
"""The data plane ``open_client`` set up beside each client it opened."""

_METHODS = {
    "SendMessageBatch": "send_message_batch",
    "ReceiveMessage": "receive_message",
    "DeleteMessageBatch": "delete_message_batch",
    "ChangeMessageVisibilityBatch": "change_message_visibility_batch",
    "GetQueueAttributes": "get_queue_attributes",
}


def _client_calls(client: Any) -> DataCall:
    """The calls of an aiobotocore ``client``, by operation name."""

    async def call(operation: str, params: Mapping[str, Any]) -> Any:
        return await getattr(client, _METHODS[operation])(**params)

    return call


def data_plane_of(client: Any) -> DataCall:
    """How ``QueueOps`` on ``client`` make their calls: what ``open_client`` set up, or
    the client's own methods (a client from elsewhere)."""
    try:
        planned = _DATA_PLANES.get(client)
    except TypeError:  # an object that cannot be weakly referenced: none was set up
        planned = None
    return planned or _client_calls(client)


async def queue_url(client: SQSClient, name: str) -> str:
    metrics.SQS_CALLS.labels("GetQueueUrl").inc()
    return (await client.get_queue_url(QueueName=name))["QueueUrl"]


def _count(operation: str, entries: int) -> None:
    metrics.SQS_CALLS.labels(operation).inc()
    metrics.SQS_ENTRIES.labels(operation).observe(entries)


@dataclass(eq=False)
class QueueOps:
    """Batched writes and plain reads on one queue."""

    client: SQSClient
    name: str
    url: str
    linger_s: float | None = 0.002
    """Send linger; None: group commit (``queuefront.batcher``)."""
    message_attributes: tuple[str, ...] = ()
    """Message attributes to receive (``("All",)``: every one); none by default, since a
    message of queuefront's own carries everything in its body."""
    _sender: Batcher[str, str] = field(init=False)
    _deleter: Batcher[str, None] = field(init=False)
    _visibility: Batcher[tuple[str, int], None] = field(init=False)
    _call: DataCall = field(init=False)

    def __post_init__(self) -> None:
        self._call = data_plane_of(self.client)
        self._sender = Batcher(self._send_batch, linger_s=self.linger_s, size_of=_utf8_len)
        slow = max(self.linger_s or 0.0, SLOW_LINGER_S)
        self._deleter = Batcher(self._delete_batch, linger_s=slow)
        self._visibility = Batcher(self._visibility_batch, linger_s=slow)

    @classmethod
    async def open(cls, client: SQSClient, name: str, linger_s: float | None) -> QueueOps:
        return cls(client, name, await queue_url(client, name), linger_s)

    async def send(self, body: str) -> str:
        """Returns the message id once SQS has accepted this message."""
        return await self._sender.submit(body)

    async def delete(self, receipt_handle: str) -> None:
        await self._deleter.submit(receipt_handle)

    async def change_visibility(self, receipt_handle: str, timeout_s: int) -> None:
        await self._visibility.submit((receipt_handle, timeout_s))

    async def receive(self, max_messages: int, wait_s: int) -> list[Message]:
        max_messages = max(1, min(max_messages, MAX_RECEIVE_MESSAGES))
        resp = await self._call(
            "ReceiveMessage",
            {
                "QueueUrl": self.url,
                "MaxNumberOfMessages": max_messages,
                "WaitTimeSeconds": wait_s,
                "AttributeNames": RECEIVE_ATTRIBUTES,
                **(
                    {"MessageAttributeNames": list(self.message_attributes)}
                    if self.message_attributes
                    else {}
                ),
            },
        )
        raw = resp.get("Messages", [])
        _count("ReceiveMessage", len(raw))
        return [
            Message(
                body=m["Body"],
                receipt_handle=m["ReceiptHandle"],
                message_id=m["MessageId"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
                sent_at=int(m.get("Attributes", {}).get("SentTimestamp", "0")) / 1000,
                attributes={
                    name: str(value.get("StringValue", ""))
                    for name, value in (m.get("MessageAttributes") or {}).items()
                },
            )
            for m in raw
        ]

    async def attributes(self, *names: str) -> dict[str, str]:
        metrics.SQS_CALLS.labels("GetQueueAttributes").inc()
        resp = await self._call(
            "GetQueueAttributes", {"QueueUrl": self.url, "AttributeNames": list(names)}
        )
        return {str(k): v for k, v in resp.get("Attributes", {}).items()}

    async def backlog(self) -> int:
        """ApproximateNumberOfMessages (visible messages; some emulators add in-flight ones)."""
        attrs = await self.attributes("ApproximateNumberOfMessages")
        return int(attrs.get("ApproximateNumberOfMessages", "0"))

    async def close(self) -> None:
        for batcher in (self._sender, self._deleter, self._visibility):
            await batcher.close()

    # --- batch calls -----------------------------------------------------------------

    async def _send_batch(self, bodies: Sequence[str]) -> list[str | BaseException]:
        outcomes: list[str | BaseException] = [
            SQSEntryError("SendMessageBatch", "NotSent", "not sent")
        ] * len(bodies)
        todo = list(range(len(bodies)))
        for _ in range(SEND_ATTEMPTS):
            resp = await self._call(
                "SendMessageBatch",
                {
                    "QueueUrl": self.url,
                    "Entries": [{"Id": str(i), "MessageBody": bodies[i]} for i in todo],
                },
            )
            _count("SendMessageBatch", len(todo))
            for ok in resp.get("Successful", []):
                outcomes[int(ok["Id"])] = ok["MessageId"]
            retry = []
            for bad in resp.get("Failed", []):
                i = int(bad["Id"])
                metrics.SQS_FAILED_ENTRIES.labels("SendMessageBatch").inc()
                outcomes[i] = SQSEntryError(
                    "SendMessageBatch", bad.get("Code", "?"), bad.get("Message", "")
                )
                if not bad.get("SenderFault", False):
                    retry.append(i)
            if not retry:
                break
            todo = retry
        return outcomes

    async def _delete_batch(self, handles: Sequence[str]) -> list[BaseException | None]:
        resp = await self._call(
            "DeleteMessageBatch",
            {
                "QueueUrl": self.url,
                "Entries": [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)],
            },
        )
        _count("DeleteMessageBatch", len(handles))
        return _entry_outcomes("DeleteMessageBatch", len(handles), resp.get("Failed", []))

    async def _visibility_batch(
        self, items: Sequence[tuple[str, int]]
    ) -> list[BaseException | None]:
        resp = await self._call(
            "ChangeMessageVisibilityBatch",
            {
                "QueueUrl": self.url,
                "Entries": [
                    {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": t}
                    for i, (h, t) in enumerate(items)
                ],
            },
        )
        _count("ChangeMessageVisibilityBatch", len(items))
        return _entry_outcomes("ChangeMessageVisibilityBatch", len(items), resp.get("Failed", []))


def _utf8_len(body: str) -> int:
    return len(body.encode())


def _entry_outcomes(operation: str, n: int, failed: Sequence[Any]) -> list[BaseException | None]:
    outcomes: list[BaseException | None] = [None] * n
    for bad in failed:
        metrics.SQS_FAILED_ENTRIES.labels(operation).inc()
        outcomes[int(bad["Id"])] = SQSEntryError(
            operation, bad.get("Code", "?"), bad.get("Message", "")
        )
    return outcomes
