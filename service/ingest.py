"""The write path at the api: validate, pack (``service.packer``), enqueue, 202.

The 202 waits for SQS's acknowledgement, for as long as the route's window: a slow
acknowledgement is not a failure (SQS has the item), and an item whose fate is unknown
is answered 504, not 503 — a retry with the same Idempotency-Key is the same item, and
the writer stores an item id once, so it counts once.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from queuefront import clock, metrics, sink
from queuefront.envelope import encode_item
from queuefront.failures import FailureLog
from queuefront.routes import Route
from queuefront.sqs import SendUnknown, SQSEntryError
from queuefront.telemetry import get_logger
from service.auth import Identity
from service.context import IDEMPOTENCY, PACKERS, SETTINGS
from service.deadlines import REDIS_CALL_S, Deadline, bounded
from service.errors import RETRY_AFTER_S, ApiError
from service.gates import check_access, read_body
from service.idempotency import fingerprint, request_key

log = get_logger(__name__)
FAILURES = FailureLog(log)


async def handle_ingest(request: web.Request, route: Route) -> web.Response:
    assert route.sink is not None
    client = await check_access(request, route.name, public=route.public)
    deadline = Deadline(route.timeout_s)
    held = await read_body(
        request, route.name, max_body_bytes=route.max_body_bytes, window_s=deadline.left()
    )
    try:
        return await _ingest(request, route, client, deadline, held.data)
    finally:
        held.release()  # the item is on the queue (or refused): nothing of it is held


async def _ingest(
    request: web.Request, route: Route, client: Identity, deadline: Deadline, body: bytes
) -> web.Response:
    assert route.sink is not None
    key = request_key(request)
    item_id = sink.item_id(route.name, key, client=client.name)
    try:
        item = sink.validate(
            route.sink,
            body,
            request.match_info,
            route=route.name,
            item=item_id,
            received_at=clock.now(),  # the writer measures its lag against it
        )
    except sink.Invalid as exc:
        metrics.INGEST_REJECTED.labels(route.name).inc()
        raise ApiError(400, "bad_request", str(exc)) from None
    limit = request.app[SETTINGS].max_message_bytes
    try:
        encoded = encode_item(item)
    except UnicodeEncodeError:
        # a lone surrogate (not text) cannot reach here today — JSON bodies refuse them
        # and undecodable path bytes stay percent-encoded — but it must never be a 500
        raise ApiError(
            400, "bad_request", "the item holds text that is not valid Unicode"
        ) from None
    packer = request.app[PACKERS][route.name]
    if not packer.fits(encoded):
        # even alone in its message it could never be sent: SQS would refuse it
        raise ApiError(
            413,
            "payload_too_large",
            f"the item does not fit in one {limit}-byte queue message (QF_MAX_MESSAGE_BYTES)",
        )
    if key is not None:
        print_ = fingerprint(request.method, request.raw_path, body)
        await bounded(
            "redis",
            "idempotency record",
            REDIS_CALL_S,
            request.app[IDEMPOTENCY].bind(route.name, client, key, print_),
        )
    try:
        async with asyncio.timeout(max(0.001, deadline.left())):
            await packer.submit(encoded)
    except (SendUnknown, TimeoutError) as exc:
        FAILURES.note("ingest send not acknowledged", exc, route=route.name)
        raise ApiError(
            504,
            "timeout",
            "the queue did not acknowledge the item in time; it may still be stored: "
            "retry with the same Idempotency-Key to be sure it counts once",
        ) from None
    except SQSEntryError as exc:
        FAILURES.note("ingest send refused", exc, route=route.name)
        if exc.sender_fault:  # the item itself: sending it again would fail again
            raise ApiError(
                400, "bad_request", f"the queue refused this item ({exc.code})"
            ) from None
        raise _unavailable() from None
    except Exception as exc:
        FAILURES.note("ingest enqueue failed", exc, route=route.name)
        raise _unavailable() from None
    metrics.INGEST_ACCEPTED.labels(route.name).inc()
    return web.Response(
        body=b'{"id":"' + item_id.encode() + b'","status":"accepted"}',
        status=202,
        content_type="application/json",
    )


def _unavailable() -> ApiError:
    return ApiError(
        503,
        "unavailable",
        "the queue did not accept the item",
        headers={"Retry-After": RETRY_AFTER_S},
    )
