"""The SQS data plane without botocore's request pipeline: JSON-protocol calls signed
with botocore's own SigV4 signer and sent over one aiohttp session.

Why: an aiobotocore call spends most of its client CPU in machinery the hot calls do not
need — the event hooks, parameter validation, the model-driven serialiser and parser,
endpoint rule evaluation per call (measured in ``bench/sqs_calls.py``). The five calls
that run per message (SendMessageBatch, ReceiveMessage, DeleteMessageBatch,
ChangeMessageVisibilityBatch, GetQueueAttributes) are plain JSON on the wire, so they are
encoded and decoded here with msgspec, signed with ``botocore.auth.SigV4Auth`` using the
credentials the aiobotocore client resolved (refreshable ones are asked for their frozen
value on every call, which refreshes them when due), and sent to the client's own
endpoint and region. aiobotocore stays in charge of the control plane (creating,
finding, configuring and deleting queues) and of resolving credentials and endpoint.

Failures look the same to callers as aiobotocore's: a service error raises the client's
own modeled ``ClientError`` subclass (code from ``x-amzn-query-error`` or ``__type``),
a transport failure raises the botocore exception aiobotocore would have raised
(``EndpointConnectionError``, ``ConnectTimeoutError``, ``ReadTimeoutError``, …, all
``BotoCoreError``). Retries follow botocore's "standard" mode: transient and throttling
errors only, at most ``attempts`` tries in all, exponential back-off with jitter, and a
retry quota so a failing SQS is not hammered with retries.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

import aiohttp
import botocore
import msgspec
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectionError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.httpsession import ProxyConfiguration, get_cert_path
from botocore.utils import get_environ_proxies

from queuefront.backoff import Backoff

CONTENT_TYPE = "application/x-amz-json-1.0"
TARGET_PREFIX = "AmazonSQS."
SIGNING_NAME = "sqs"
USER_AGENT = f"queuefront aiohttp/{aiohttp.__version__} botocore/{botocore.__version__}"
KEEPALIVE_S = 12.0
"""How long an idle connection is kept (aiobotocore's default)."""

MAX_BACKOFF_S = 20.0
"""botocore's cap on one retry's back-off."""
BACKOFF_BASE_S = 0.05
"""botocore's first back-off scale for transient errors (throttling: THROTTLE_BASE_S)."""
THROTTLE_BASE_S = 1.0
TRANSIENT_BACKOFF = Backoff(first_s=BACKOFF_BASE_S, cap_s=MAX_BACKOFF_S, jitter="full")
THROTTLE_BACKOFF = Backoff(first_s=THROTTLE_BASE_S, cap_s=MAX_BACKOFF_S, jitter="full")
"""Full jitter: every client of a throttled or failing endpoint retries at once."""
RETRY_AFTER_STRETCH_S = 5.0
"""The most a server's ``x-amz-retry-after`` lengthens one back-off (botocore's rule)."""

TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"}
)
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        # SQS's own query-protocol code for throttling (x-amzn-query-error)
        "AWS.SimpleQueueService.RequestThrottled",
    }
)
"""botocore's standard-mode lists (botocore.retries.standard), SQS's own code added."""


class Credentials(Protocol):
    """What aiobotocore's ``AioCredentials`` / ``AioRefreshableCredentials`` offer."""

    async def get_frozen_credentials(self) -> Any: ...


class Exceptions(Protocol):
    """A botocore client's ``exceptions``: the modeled error class of a code."""

    def from_code(self, code: str) -> type[Exception]: ...


class RetryQuota:
    """botocore's retry token bucket: each retry spends tokens, each success returns
    some, and with the bucket empty no call is retried — a failing SQS gets at most one
    try per call instead of ``attempts`` (no retry storm on top of an outage)."""

    CAPACITY = 500
    RETRY_COST = 14
    THROTTLE_COST = 5
    SUCCESS_REFUND = 1

    def __init__(self) -> None:
        self.available = self.CAPACITY

    def acquire(self, throttled: bool) -> int:
        """Tokens taken for one retry (0: none left, do not retry)."""
        cost = self.THROTTLE_COST if throttled else self.RETRY_COST
        if cost > self.available:
            return 0
        self.available -= cost
        return cost

    def release(self, spent: int) -> None:
        self.available = min(self.CAPACITY, self.available + (spent or self.SUCCESS_REFUND))


class _Error(msgspec.Struct):
    type: str = msgspec.field(name="__type", default="")
    message: str = ""
    Message: str = ""


_encode = msgspec.json.Encoder().encode
_decode_object = msgspec.json.Decoder(dict[str, Any]).decode
_decode_error = msgspec.json.Decoder(_Error).decode


class SQSWire:
    """JSON-protocol SQS calls on one aiohttp session (one per process, like the client)."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        endpoint_url: str,
        region: str,
        credentials: Credentials | None,
        exceptions: Exceptions,
        attempts: int,
        signing_name: str = SIGNING_NAME,
        proxy: str | None = None,
        proxy_headers: Mapping[str, str] | None = None,
    ) -> None:
        self._http = http
        self._proxy = proxy
        self._proxy_headers = proxy_headers
        self._url = endpoint_url.rstrip("/") + "/"
        self._region = region
        self._credentials = credentials
        self._exceptions = exceptions
        self._attempts = max(1, attempts)
        self._signing_name = signing_name
        self._quota = RetryQuota()

    async def call(
        self,
        operation: str,
        params: Mapping[str, Any],
        *,
        attempts: int | None = None,
        read_timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """One SQS operation (``params`` as in the API reference); the decoded response.

        ``attempts`` (default: the wire's) and ``read_timeout_s`` (default: the
        session's) for this call only: ``QueueOps`` sends with one attempt, since a call
        whose answer was lost may have been carried out (``queuefront.sqs``)."""
        body = _encode(params)
        tries = self._attempts if attempts is None else max(1, attempts)
        limits = self._http.timeout
        if read_timeout_s is not None:
            limits = aiohttp.ClientTimeout(
                total=None, sock_connect=limits.sock_connect, sock_read=read_timeout_s
            )
        attempt = spent = 0
        while True:
            attempt += 1
            try:
                status, headers, data = await self._send(operation, body, limits)
            except (ConnectionError, HTTPClientError):
                # transient in botocore's standard mode (its timeouts are among these)
                tokens = self._retry_tokens(attempt, tries, throttled=False)
                if not tokens:
                    raise
                spent = tokens
                await asyncio.sleep(backoff(attempt, throttled=False))
                continue
            if status < 300:
                self._quota.release(spent)
                return _decode_result(data, operation)
            response = _error_response(status, headers, data, attempt)
            codes = {response["Error"]["Code"], response["Error"].get("QueryErrorCode")}
            throttled = not codes.isdisjoint(THROTTLING_CODES)
            transient = status in TRANSIENT_STATUS or not codes.isdisjoint(TRANSIENT_CODES)
            tokens = (
                self._retry_tokens(attempt, tries, throttled=throttled)
                if throttled or transient
                else 0
            )
            if not tokens:
                raise self._error(operation, response)
            spent = tokens
            retry_after = headers.get("x-amz-retry-after")
            await asyncio.sleep(backoff(attempt, throttled=throttled, retry_after=retry_after))

    def _retry_tokens(self, attempt: int, attempts: int, *, throttled: bool) -> int:
        """Tokens taken from the retry quota for another try; 0: no try left."""
        if attempt >= attempts:
            return 0
        return self._quota.acquire(throttled)

    async def _send(
        self, operation: str, body: bytes, limits: aiohttp.ClientTimeout
    ) -> tuple[int, Mapping[str, str], bytes]:
        if self._credentials is None:
            raise NoCredentialsError()
        frozen = await self._credentials.get_frozen_credentials()
        if frozen is None or not frozen.access_key:
            raise NoCredentialsError()
        request = AWSRequest(
            method="POST",
            url=self._url,
            data=body,
            headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + operation},
        )
        SigV4Auth(frozen, self._signing_name, self._region).add_auth(request)
        headers = dict(request.headers.items())
        headers["Accept-Encoding"] = "identity"
        headers["User-Agent"] = USER_AGENT
        url = self._url
        try:
            async with self._http.post(
                url,
                data=body,
                headers=headers,
                proxy=self._proxy,
                proxy_headers=self._proxy_headers,
                timeout=limits,
            ) as resp:
                data = await resp.read()
                return resp.status, resp.headers, data
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            raise ConnectionClosedError(endpoint_url=url, error=exc, request=request) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise ConnectTimeoutError(endpoint_url=url, error=exc) from exc
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise ReadTimeoutError(endpoint_url=url, error=exc) from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise EndpointConnectionError(endpoint_url=url, error=exc) from exc
        except aiohttp.ClientError as exc:
            raise HTTPClientError(error=exc) from exc

    def _error(self, operation: str, response: dict[str, Any]) -> Exception:
        """The client's modeled exception (a ``ClientError``) for an error response, picked
        as aiobotocore picks it: by the shape name when SQS sent a query-protocol code."""
        error = response["Error"]
        cls = self._exceptions.from_code(error.get("QueryErrorCode") or error["Code"])
        return cls(response, operation)


def _decode_result(data: bytes, operation: str) -> dict[str, Any]:
    """A success's JSON object. Anything else (a proxy's page, a cut body) is a failed call
    (``HTTPClientError``, a ``BotoCoreError``), not retried: SQS may have acted on it."""
    if not data:
        return {}
    try:
        return _decode_object(data)
    except msgspec.DecodeError as exc:
        raise HTTPClientError(error=f"{operation}: unreadable response: {exc}") from exc


def _error_response(
    status: int, headers: Mapping[str, str], data: bytes, attempt: int
) -> dict[str, Any]:
    """An error response in botocore's parsed layout (``Error.Code``, ``Error.Message``,
    ``ResponseMetadata``), so ``ClientError.response`` reads the same on either path."""
    try:
        parsed = _decode_error(data) if data else _Error()
    except msgspec.DecodeError:
        parsed = _Error(message=data.decode("utf-8", "replace"))
    # "com.amazonaws.sqs#QueueDoesNotExist" → "QueueDoesNotExist"
    code = (parsed.type or str(status)).split(":", 1)[0].rsplit("#", 1)[-1]
    error: dict[str, str] = {"Message": parsed.message or parsed.Message, "Code": code}
    query_code, _, fault = headers.get("x-amzn-query-error", "").partition(";")
    if query_code and fault:
        # SQS's JSON errors carry the query-protocol code ("AWS.SimpleQueueService.
        # NonExistentQueue") in this header; botocore reports it as the code
        error.update(QueryErrorCode=code, Type=fault, Code=query_code)
    return {
        "Error": error,
        "ResponseMetadata": {
            "RequestId": headers.get("x-amzn-requestid", ""),
            "HTTPStatusCode": status,
            "HTTPHeaders": {k.lower(): v for k, v in headers.items()},
            "RetryAttempts": attempt - 1,
        },
    }


def backoff(attempt: int, *, throttled: bool, retry_after: str | None = None) -> float:
    """botocore's standard back-off: ``rand(0, 1) * min(base * 2**(attempt-1), 20 s)``,
    stretched to the server's ``x-amz-retry-after`` (ms) by at most 5 s."""
    delay = (THROTTLE_BACKOFF if throttled else TRANSIENT_BACKOFF)(attempt)
    if retry_after is not None:
        try:
            wanted = int(retry_after) / 1000
        except ValueError:
            return delay
        if wanted >= 0:
            return max(delay, min(wanted, delay + RETRY_AFTER_STRETCH_S))
    return delay


def ssl_context(verify: bool | str) -> ssl.SSLContext | bool:
    """The endpoint's TLS settings as botocore resolves them: ``True`` verifies against
    botocore's bundle (certifi), a path against the bundle at that path, ``False`` not at all."""
    if verify is False:
        return False
    return ssl.create_default_context(cafile=get_cert_path(verify))


@asynccontextmanager
async def open_wire(
    *,
    endpoint_url: str,
    region: str,
    credentials: Credentials | None,
    exceptions: Exceptions,
    pool: int,
    connect_timeout_s: float,
    read_timeout_s: float,
    attempts: int,
    verify: bool | str = True,
) -> AsyncIterator[SQSWire]:
    """An ``SQSWire`` with its own session: ``pool`` connections, each try bounded by
    ``connect_timeout_s`` to connect and ``read_timeout_s`` between bytes read (botocore's
    ``connect_timeout`` / ``read_timeout``).

    The proxy (``HTTPS_PROXY``, ``NO_PROXY``, …) is looked up once, here, as botocore looks
    it up for an endpoint: aiohttp's ``trust_env`` would look it up again in a thread on
    every request, which measured more CPU than the whole call without it.
    """
    proxies = ProxyConfiguration(proxies=get_environ_proxies(endpoint_url))
    proxy = proxies.proxy_url_for(endpoint_url)
    tls: ssl.SSLContext | bool = False
    if endpoint_url.startswith("https:"):
        # loading a CA bundle reads files: not on the event loop
        tls = await asyncio.to_thread(ssl_context, verify)
    connector = aiohttp.TCPConnector(limit=pool, keepalive_timeout=KEEPALIVE_S, ssl=tls)
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s
    )
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
    ) as http:
        yield SQSWire(
            http,
            endpoint_url=endpoint_url,
            region=region,
            credentials=credentials,
            exceptions=exceptions,
            attempts=attempts,
            proxy=proxy,
            proxy_headers=proxies.proxy_headers_for(proxy) if proxy else None,
        )
