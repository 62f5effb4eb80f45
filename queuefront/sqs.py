"""SQS access: one client per process, and per-queue batched operations.

Why batch everything: each call costs one round trip and a fixed amount of client CPU
whatever it carries (about 1 ms through aiobotocore, 0.3 ms through the lean data plane of
``queuefront.sqswire``; ``bench/sqs_calls.py``), so a pod that sent, deleted or extended
messages one by one would spend its CPU on SQS calls instead of on requests.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from weakref import WeakKeyDictionary

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioCredentials
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
)

from queuefront import metrics
from queuefront.batcher import Batcher
from queuefront.limits import MAX_RECEIVE_MESSAGES
from queuefront.settings import Settings
from queuefront.sqswire import THROTTLING_CODES, backoff, open_wire

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient as SQSClient
else:
    SQSClient = Any

DataPlane = Literal["lean", "botocore"]
K = TypeVar("K", bound=str)

SLOW_LINGER_S = 0.02
"""Linger of deletes and visibility changes: no client waits on them, so they wait for
fuller batches (measured: with the send linger, deletes were 17% of a worker's CPU)."""

RECEIVE_ATTRIBUTES = ("ApproximateReceiveCount", "SentTimestamp")
"""The message attributes ``Message`` is built from."""

SEND_ATTEMPTS = 3
"""SendMessageBatch calls for one entry at most: the first, and retries of what SQS
certainly did not take (throttled, not connected, an entry refused for a reason of its
own). Never a retry of a call whose answer was lost (``SendUnknown``)."""

SEND_READ_TIMEOUT_S = 10.0
"""How long a send waits for SQS's answer, whatever the client's own read timeout. An
acknowledgement that comes late still comes: SQS has the message, and a short timeout
would turn a slow answer into a failure (or, with a retry, into a second message).
Callers bound their own waits (a request its window); the call outlives them."""


class SQSEntryError(Exception):
    """SQS answered, and did not take this entry: it is certainly not on the queue. The
    other entries of the call may have succeeded."""

    def __init__(
        self, operation: str, code: str, message: str, *, sender_fault: bool = False
    ) -> None:
        super().__init__(f"{operation}: {code}: {message}")
        self.code = code
        self.sender_fault = sender_fault
        """SQS blames the message itself (``InvalidMessageContents``, too long): sending it
        again would fail again."""


class SendUnknown(Exception):
    """The call that carried this message may have reached SQS, but its answer was lost
    (a read timeout, a connection cut mid-call, a 5xx, an unreadable answer): the message
    may be on the queue, or not.

    It is never re-sent blindly: a standard queue has no deduplication, so a re-send
    after a lost answer is a second message. The caller decides — the api keeps waiting
    for the reply of a proxied request (``service.proxy``), and re-sends an ingest
    message only because its items carry ids the writer stores once (``service.packer``).
    """

    def __init__(self, operation: str, cause: BaseException) -> None:
        super().__init__(f"{operation}: no answer, the outcome is unknown: {cause!r}")
        self.cause = cause


SendFailure = Literal["unknown", "retry", "throttled", "final"]


def send_failure(exc: Exception) -> SendFailure:
    """What a failed SendMessageBatch call means for its entries.

    ``unknown``: SQS may have carried it out (see ``SendUnknown``); ``retry`` /
    ``throttled``: it certainly did not (not connected; throttled) and may be tried
    again; ``final``: it did not, and trying again would not help (refused: access,
    a missing queue, a batch too long, no credentials).
    """
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        if not {error.get("Code"), error.get("QueryErrorCode")}.isdisjoint(THROTTLING_CODES):
            return "throttled"
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        # a 5xx (InternalError, ServiceUnavailable) says nothing of what was stored
        return "unknown" if status >= 500 or status == 0 else "final"
    if isinstance(exc, ConnectTimeoutError | NoCredentialsError):
        return "retry" if isinstance(exc, ConnectTimeoutError) else "final"
    if isinstance(exc, EndpointConnectionError):
        # both data planes raise this for any connection error; only a failed connect
        # (refused, no route, no DNS) proves the request was never written
        cause = exc.kwargs.get("error")
        if isinstance(cause, aiohttp.ClientConnectorError | socket.gaierror):
            return "retry"
    return "unknown"


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
    send_read_timeout_s: float = SEND_READ_TIMEOUT_S,
) -> AsyncIterator[SQSClient]:
    """One client per process: creating one costs tens of milliseconds and a connection pool.

    ``read_timeout_s`` defaults to the long poll plus a margin (consumers); botocore's own
    retries (``attempts``, standard mode) count against the caller's time as well, so a
    caller with a deadline keeps them few.

    Sends are the exception, on both data planes: ``QueueOps`` makes each SendMessageBatch
    call once, with ``send_read_timeout_s``, and retries only what SQS certainly did not
    take (see ``send_failure``). botocore's standard mode would retry a read timeout,
    and a SendMessageBatch whose answer was lost may well have been carried out.

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
            # total_max_attempts counts the first try; "max_attempts" would count retries only
            retries={"mode": "standard", "total_max_attempts": attempts},
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
            send = partial(wire.call, attempts=1, read_timeout_s=send_read_timeout_s)
            _DATA_PLANES[client] = Planes(call=wire.call, send=send)
        else:
            # botocore's retries are per client: sends get a client of their own, one try
            config = kwargs["config"].merge(
                AioConfig(
                    read_timeout=send_read_timeout_s,
                    retries={"mode": "standard", "total_max_attempts": 1},
                )
            )
            sender = await stack.enter_async_context(
                session.create_client("sqs", **{**kwargs, "config": config})
            )
            _DATA_PLANES[client] = Planes(call=_client_calls(client), send=_client_calls(sender))
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


@dataclass(frozen=True, slots=True)
class Planes:
    call: DataCall
    """Every per-message call, with the client's retries."""
    send: DataCall
    """SendMessageBatch: one try, ``SEND_READ_TIMEOUT_S`` (``QueueOps`` retries)."""


_DATA_PLANES: WeakKeyDictionary[Any, Planes] = WeakKeyDictionary()
"""The data planes ``open_client`` set up beside each client it opened."""

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


def planes_of(client: Any) -> Planes:
    """How ``QueueOps`` on ``client`` make their calls: what ``open_client`` set up, or
    the client's own methods (a client from elsewhere, with its own retries)."""
    try:
        planned = _DATA_PLANES.get(client)
    except TypeError:  # an object that cannot be weakly referenced: none was set up
        planned = None
    if planned is None:
        calls = _client_calls(client)
        return Planes(call=calls, send=calls)
    return planned


def data_plane_of(client: Any) -> DataCall:
    """The per-message calls of ``planes_of(client)`` (sends aside)."""
    return planes_of(client).call


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
    _send_call: DataCall = field(init=False)

    def __post_init__(self) -> None:
        planes = planes_of(self.client)
        self._call, self._send_call = planes.call, planes.send
        self._sender = Batcher(self._send_batch, linger_s=self.linger_s, size_of=_utf8_len)
        slow = max(self.linger_s or 0.0, SLOW_LINGER_S)
        self._deleter = Batcher(self._delete_batch, linger_s=slow)
        self._visibility = Batcher(self._visibility_batch, linger_s=slow)

    @classmethod
    async def open(cls, client: SQSClient, name: str, linger_s: float | None) -> QueueOps:
        return cls(client, name, await queue_url(client, name), linger_s)

    async def send(self, body: str) -> str:
        """Returns the message id once SQS has accepted this message.

        Raises ``SendUnknown`` when SQS may have it (its answer was lost), anything else
        when it certainly does not: ``SQSEntryError`` (this entry refused), the error of
        the whole call (refused, not connected)."""
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
        """Each entry's own outcome. A retry carries only the entries SQS certainly did
        not take, and its failure is theirs alone: the entries accepted before keep
        their message ids (their messages are on the queue)."""
        outcomes: list[str | BaseException] = [
            SQSEntryError("SendMessageBatch", "NotSent", "not sent")
        ] * len(bodies)
        todo = list(range(len(bodies)))
        for attempt in range(1, SEND_ATTEMPTS + 1):
            _count("SendMessageBatch", len(todo))
            try:
                resp = await self._send_call(
                    "SendMessageBatch",
                    {
                        "QueueUrl": self.url,
                        "Entries": [{"Id": str(i), "MessageBody": bodies[i]} for i in todo],
                    },
                )
            except Exception as exc:
                verdict = send_failure(exc)
                if verdict == "unknown":
                    metrics.SQS_UNKNOWN_SENDS.inc(len(todo))
                    unknown = SendUnknown("SendMessageBatch", exc)
                    for i in todo:
                        outcomes[i] = unknown
                    break
                for i in todo:
                    outcomes[i] = exc
                if verdict == "final" or attempt == SEND_ATTEMPTS:
                    break
                await asyncio.sleep(backoff(attempt, throttled=verdict == "throttled"))
                continue
            for ok in resp.get("Successful", []):
                outcomes[int(ok["Id"])] = ok["MessageId"]
            retry = []
            for bad in resp.get("Failed", []):
                i = int(bad["Id"])
                metrics.SQS_FAILED_ENTRIES.labels("SendMessageBatch").inc()
                sender_fault = bool(bad.get("SenderFault", False))
                outcomes[i] = SQSEntryError(
                    "SendMessageBatch",
                    bad.get("Code", "?"),
                    bad.get("Message", ""),
                    sender_fault=sender_fault,
                )
                if not sender_fault:
                    retry.append(i)
            if not retry or attempt == SEND_ATTEMPTS:
                break
            todo = retry
            await asyncio.sleep(backoff(attempt, throttled=False))
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


DLQ_LINGER_S = 0.0
"""A dead-letter queue is read for its depth; what is sent to it (the writer's refused
messages) goes at once: nothing waits to join them."""


async def open_with_dlqs(
    client: SQSClient, settings: Settings, names: Mapping[K, str]
) -> tuple[dict[K, QueueOps], list[QueueOps]]:
    """The queues a consumer receives from (``names``: role → queue name), sending with
    ``QF_SEND_LINGER_MS``, and their dead-letter queues in the same order: every consumer
    watches its DLQs' depth (``queuefront.consumer.serve``)."""
    queues = {
        role: await QueueOps.open(client, name, settings.send_linger_s)
        for role, name in names.items()
    }
    dlqs = [
        await QueueOps.open(client, settings.dlq_name(name), DLQ_LINGER_S)
        for name in names.values()
    ]
    return queues, dlqs


def _utf8_len(body: str) -> int:
    return len(body.encode())


def _entry_outcomes(operation: str, n: int, failed: Sequence[Any]) -> list[BaseException | None]:
    outcomes: list[BaseException | None] = [None] * n
    for bad in failed:
        metrics.SQS_FAILED_ENTRIES.labels(operation).inc()
        outcomes[int(bad["Id"])] = SQSEntryError(
            operation,
            bad.get("Code", "?"),
            bad.get("Message", ""),
            sender_fault=bool(bad.get("SenderFault", False)),
        )
    return outcomes
