"""The lean SQS data plane where the emulator cannot tell: it ignores signatures and never
answers 5xx or throttles. A local HTTP server stands in for SQS here: it checks each
request's SigV4 signature with a verifier written from AWS's specification (not
botocore's code), and answers from a script of responses."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiobotocore.credentials import AioCredentials, AioRefreshableCredentials
from aiobotocore.session import get_session
from aiohttp import web
from botocore.exceptions import ClientError, HTTPClientError

from devstack import free_port
from queuefront.settings import Settings
from queuefront.sqs import QueueOps, open_client
from queuefront.sqswire import (
    BACKOFF_BASE_S,
    RetryQuota,
    _error_response,
    backoff,
    open_wire,
)

REGION = "eu-west-3"
SECRETS = {"AKIDFIRST": "first-secret", "AKIDSECOND": "second-secret", "AKIDENV": "env-secret"}
ATTRS_OK: tuple[int, dict[str, str], bytes] = (
    200,
    {},
    b'{"Attributes":{"ApproximateNumberOfMessages":"7"}}',
)


def verify_sigv4(request: web.Request, body: bytes) -> str:
    """Checks the request's SigV4 signature from first principles; returns its key id.

    https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
    """
    algorithm, _, fields = request.headers["Authorization"].partition(" ")
    assert algorithm == "AWS4-HMAC-SHA256"
    parts = dict(p.strip().split("=", 1) for p in fields.split(","))
    key_id, day, region, service, terminal = parts["Credential"].split("/")
    assert (region, service, terminal) == (REGION, "sqs", "aws4_request")
    signed = parts["SignedHeaders"].split(";")
    # what must be covered: the host the request went to, its date, target, body type
    assert {"host", "x-amz-date", "x-amz-target", "content-type"} <= set(signed), signed
    amz_date = request.headers["X-Amz-Date"]
    assert amz_date.startswith(day)
    sent_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - sent_at).total_seconds()) < 300
    canonical_headers = "".join(
        f"{name}:{' '.join(request.headers[name].split())}\n" for name in signed
    )
    canonical = "\n".join(
        [
            request.method,
            request.raw_path.split("?")[0],
            request.query_string,
            canonical_headers,
            parts["SignedHeaders"],
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + SECRETS[key_id]).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, parts["Signature"]), "signature does not verify"
    return key_id


class FakeSQS:
    """Records each request (after checking its signature) and answers from ``script``;
    the last response repeats."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.script: list[tuple[int, dict[str, str], bytes]] = [ATTRS_OK]
        self.seen: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(
            {
                "key_id": verify_sigv4(request, body),
                "target": request.headers["X-Amz-Target"],
                "content_type": request.headers["Content-Type"],
                "token": request.headers.get("X-Amz-Security-Token"),
                "body": body,
            }
        )
        status, headers, payload = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return web.Response(
            status=status,
            body=payload,
            headers={"Content-Type": "application/x-amz-json-1.0", **headers},
        )


@pytest.fixture
async def fake_sqs() -> AsyncIterator[FakeSQS]:
    fake = FakeSQS()
    app = web.Application()
    app.router.add_post("/", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", fake.port).start()
    yield fake
    await runner.cleanup()


@pytest.fixture
async def exceptions() -> AsyncIterator[Any]:
    """A botocore SQS client's modeled exceptions (the client never calls out)."""
    async with get_session().create_client(
        "sqs", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y"
    ) as client:
        yield client.exceptions


def wire(fake: FakeSQS, exceptions: Any, credentials: Any, attempts: int = 3) -> Any:
    return open_wire(
        endpoint_url=fake.url,
        region=REGION,
        credentials=credentials,
        exceptions=exceptions,
        pool=4,
        connect_timeout_s=1.0,
        read_timeout_s=1.0,
        attempts=attempts,
    )


STATIC = AioCredentials("AKIDFIRST", SECRETS["AKIDFIRST"])
ATTRS = {"QueueUrl": "http://sqs/1/q", "AttributeNames": ["ApproximateNumberOfMessages"]}


async def test_requests_are_json_protocol_and_signed(fake_sqs: FakeSQS, exceptions: Any) -> None:
    async with wire(fake_sqs, exceptions, STATIC) as sqs:
        resp = await sqs.call("GetQueueAttributes", ATTRS)
    assert resp == {"Attributes": {"ApproximateNumberOfMessages": "7"}}
    (seen,) = fake_sqs.seen
    assert seen["key_id"] == "AKIDFIRST" and seen["token"] is None
    assert seen["target"] == "AmazonSQS.GetQueueAttributes"
    assert seen["content_type"] == "application/x-amz-json-1.0"
    assert (
        seen["body"]
        == b'{"QueueUrl":"http://sqs/1/q","AttributeNames":["ApproximateNumberOfMessages"]}'
    )


async def test_open_client_signs_with_the_default_chain_s_credentials_and_token(
    fake_sqs: FakeSQS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No keys given to open_client: the credentials (and session token) the
    aiobotocore session resolves are the ones the lean calls are signed with."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRETS["AKIDENV"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-from-env")
    settings = Settings(sqs_endpoint_url=fake_sqs.url, aws_region=REGION, sqs_data_plane="lean")
    async with open_client(settings) as client:
        ops = QueueOps(client, "q", f"{fake_sqs.url}/123456789012/q")
        assert await ops.backlog() == 7
    (seen,) = fake_sqs.seen
    assert seen["key_id"] == "AKIDENV"
    assert seen["token"] == "session-token-from-env"


async def test_refreshable_credentials_are_refreshed_when_due(
    fake_sqs: FakeSQS, exceptions: Any
) -> None:
    clock = [datetime.now(UTC)]
    issued = iter(["AKIDSECOND"])

    async def refresh() -> dict[str, str]:
        key_id = next(issued)
        expiry = clock[0] + timedelta(hours=1)
        return {
            "access_key": key_id,
            "secret_key": SECRETS[key_id],
            "token": f"token-of-{key_id}",
            "expiry_time": expiry.isoformat(),
        }

    credentials = AioRefreshableCredentials(
        access_key="AKIDFIRST",
        secret_key=SECRETS["AKIDFIRST"],
        token="token-of-AKIDFIRST",
        expiry_time=clock[0] + timedelta(hours=1),
        refresh_using=refresh,
        method="test",
        time_fetcher=lambda: clock[0],
    )
    async with wire(fake_sqs, exceptions, credentials) as sqs:
        await sqs.call("GetQueueAttributes", ATTRS)
        clock[0] += timedelta(minutes=55)  # inside botocore's mandatory refresh window
        await sqs.call("GetQueueAttributes", ATTRS)
        await sqs.call("GetQueueAttributes", ATTRS)
    assert [(s["key_id"], s["token"]) for s in fake_sqs.seen] == [
        ("AKIDFIRST", "token-of-AKIDFIRST"),
        ("AKIDSECOND", "token-of-AKIDSECOND"),
        ("AKIDSECOND", "token-of-AKIDSECOND"),
    ]


def error(status: int, type_: str, query: str = "") -> tuple[int, dict[str, str], bytes]:
    headers = {"x-amzn-query-error": query} if query else {}
    return status, headers, b'{"__type":"%s","message":"said so"}' % type_.encode()


@pytest.mark.parametrize("attempts", [1, 3])
async def test_server_errors_are_retried_up_to_the_attempts_and_no_further(
    fake_sqs: FakeSQS, exceptions: Any, attempts: int
) -> None:
    fake_sqs.script = [error(500, "com.amazonaws.sqs#InternalError")]
    async with wire(fake_sqs, exceptions, STATIC, attempts) as sqs:
        with pytest.raises(ClientError) as err:
            await sqs.call("GetQueueAttributes", ATTRS)
    assert len(fake_sqs.seen) == attempts
    assert err.value.response["Error"]["Code"] == "InternalError"
    assert err.value.response["ResponseMetadata"]["RetryAttempts"] == attempts - 1


async def test_a_transient_error_then_success_returns_the_success(
    fake_sqs: FakeSQS, exceptions: Any
) -> None:
    fake_sqs.script = [error(503, "ServiceUnavailable"), ATTRS_OK]
    async with wire(fake_sqs, exceptions, STATIC) as sqs:
        resp = await sqs.call("GetQueueAttributes", ATTRS)
    assert resp["Attributes"]["ApproximateNumberOfMessages"] == "7"
    assert len(fake_sqs.seen) == 2


async def test_throttling_is_retried_with_the_longer_back_off(
    fake_sqs: FakeSQS, exceptions: Any
) -> None:
    fake_sqs.script = [
        error(400, "com.amazonaws.sqs#RequestThrottled", "RequestThrottled;Sender"),
        ATTRS_OK,
    ]
    async with wire(fake_sqs, exceptions, STATIC, attempts=2) as sqs:
        await sqs.call("GetQueueAttributes", ATTRS)
    assert len(fake_sqs.seen) == 2


async def test_a_client_error_is_not_retried_and_keeps_its_class(
    fake_sqs: FakeSQS, exceptions: Any
) -> None:
    fake_sqs.script = [
        error(
            400,
            "com.amazonaws.sqs#QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue;Sender",
        )
    ]
    async with wire(fake_sqs, exceptions, STATIC) as sqs:
        with pytest.raises(exceptions.QueueDoesNotExist) as err:
            await sqs.call("GetQueueAttributes", ATTRS)
    assert len(fake_sqs.seen) == 1
    assert err.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert err.value.response["Error"]["QueryErrorCode"] == "QueueDoesNotExist"
    assert err.value.response["Error"]["Message"] == "said so"
    assert err.value.operation_name == "GetQueueAttributes"


async def test_an_unreadable_success_is_a_botocore_error_and_not_retried(
    fake_sqs: FakeSQS, exceptions: Any
) -> None:
    """A 200 whose body is not JSON (a proxy's page): SQS may have acted on the call, so it
    is not sent again; the caller gets a BotoCoreError (503 in the api), not a crash."""
    fake_sqs.script = [(200, {}, b"<html>gateway</html>")]
    async with wire(fake_sqs, exceptions, STATIC) as sqs:
        with pytest.raises(HTTPClientError):
            await sqs.call("SendMessageBatch", {"QueueUrl": "q", "Entries": []})
    assert len(fake_sqs.seen) == 1


def test_error_codes_are_read_as_botocore_reads_them() -> None:
    headers = {"x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender"}
    body = b'{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"gone"}'
    error_ = _error_response(400, headers, body, 1)["Error"]
    assert error_ == {
        "Code": "AWS.SimpleQueueService.NonExistentQueue",
        "QueryErrorCode": "QueueDoesNotExist",
        "Type": "Sender",
        "Message": "gone",
    }
    # no query-protocol header: the shape name is the code; "Message" spelt either way
    assert _error_response(400, {}, b'{"__type":"A#B:x","Message":"m"}', 1)["Error"] == {
        "Code": "B",
        "Message": "m",
    }
    # no body, or not JSON: the status is the code, the text the message
    assert _error_response(502, {}, b"", 1)["Error"]["Code"] == "502"
    assert _error_response(502, {}, b"bad gateway", 1)["Error"]["Message"] == "bad gateway"


def test_back_off_is_botocore_s_standard_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("queuefront.backoff.random.random", lambda: 1.0)
    assert backoff(1, throttled=False) == BACKOFF_BASE_S
    assert backoff(3, throttled=False) == BACKOFF_BASE_S * 4
    assert backoff(2, throttled=True) == 2.0
    assert backoff(30, throttled=True) == 20.0  # capped
    assert backoff(1, throttled=False, retry_after="1500") == 1.5
    assert backoff(1, throttled=False, retry_after="60000") == BACKOFF_BASE_S + 5


def test_the_retry_quota_stops_retries_when_spent_and_refills_on_success() -> None:
    quota = RetryQuota()
    taken = [quota.acquire(throttled=False) for _ in range(40)]
    assert taken.count(RetryQuota.RETRY_COST) == RetryQuota.CAPACITY // RetryQuota.RETRY_COST
    assert taken[-1] == 0
    quota.release(RetryQuota.RETRY_COST)  # a retried call that succeeded gives its cost back
    assert quota.acquire(throttled=False) == RetryQuota.RETRY_COST
