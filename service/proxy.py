"""The proxy path: route → gates → cache → admission → enqueue → await the reply.

Every step runs under the request's deadline (its route's window, ``timeout_s``): Redis
and SQS calls through ``service.deadlines.bounded``, the reply wait for whatever is left.
A dependency that is slow or down answers 503 fast, an overloaded queue 503 at once
(``service.admission``), a reply that does not come in time 504 — never a 500.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from aiohttp import web

from queuefront import cache, clock, metrics
from queuefront.envelope import (
    CacheSpec,
    Reply,
    RequestEnvelope,
    encode_request,
    pack_body,
)
from queuefront.failures import FailureLog
from queuefront.headers import named_headers
from queuefront.routes import Route
from queuefront.sqs import SendUnknown, SQSEntryError
from queuefront.telemetry import get_logger
from queuefront.upstream import Unforwardable, request_target
from service.auth import Identity
from service.bodies import EMPTY, Body
from service.context import (
    HOTCACHE,
    IDEMPOTENCY,
    KEYS,
    MONITOR,
    QUEUES,
    REDIS,
    SETTINGS,
    WAITER,
    WRITE_PROBE,
)
from service.deadlines import GUARDED_ERRORS, REDIS_CALL_S, SQS_SEND_S, Deadline, bounded
from service.errors import PRIORITY, REQUEST_ID, ApiError, redis_full, unavailable
from service.forwarding import backend_headers
from service.gates import check_access, read_body
from service.hotcache import Target
from service.idempotency import UNSAFE_METHODS, fingerprint, request_key
from service.tombstone import Settled, settle

log = get_logger(__name__)
FAILURES = FailureLog(log)

SEND_ERRORS: tuple[type[BaseException], ...] = (*GUARDED_ERRORS, SendUnknown)
"""A send that failed, or may have: SQS, its client, or the wait for its answer."""
TOMBSTONE_TIMEOUT_S = 0.5
"""Longest the api waits for Redis to settle a request whose send it gave up on."""


def reply_response(reply: Reply, route: Route, cache_state: str | None) -> web.Response:
    # the worker kept only the headers that may be returned (workers/priority/backend.py)
    response = web.Response(status=reply.status, body=reply.body, headers=reply.headers)
    if cache_state is not None:
        response.headers["X-Cache"] = cache_state
    if route.edge_ttl_s is not None and 200 <= reply.status < 300:
        response.headers["Cache-Control"] = f"public, s-maxage={route.edge_ttl_s}"
    return response


async def handle(request: web.Request, route: Route) -> web.Response:
    request[PRIORITY] = route.priority
    client = await check_access(request, route.name, public=route.public)
    deadline = Deadline(route.timeout_s)
    # a cached route's answer is shared by everyone who sends its key, so it must not
    # depend on a body the key does not hold: none is read, none forwarded
    body = (
        EMPTY
        if route.cache is not None
        else await read_body(
            request, route.name, max_body_bytes=route.max_body_bytes, window_s=deadline.left()
        )
    )
    try:
        return await _handle(request, route, client, deadline, body)
    finally:
        body.release()


async def _handle(
    request: web.Request, route: Route, client: Identity, deadline: Deadline, body: Body
) -> web.Response:
    key = request_key(request)
    if key is None or request.method not in UNSAFE_METHODS:
        response, _ = await _serve(request, route, deadline, body)
        return response
    store = request.app[IDEMPOTENCY]
    print_ = fingerprint(request.method, request.raw_path, body.data)
    claim = await bounded(
        "redis",
        "idempotency claim",
        deadline.bound(REDIS_CALL_S),
        store.claim(route.name, client, key, print_, request[REQUEST_ID], route.timeout_s),
    )
    if claim.replay is not None:
        metrics.IDEMPOTENT_REPLAYS.labels(route.name).inc()
        response = reply_response(claim.replay, route, None)
        response.headers["Idempotent-Replayed"] = "true"
        return response
    # a retry after a 504 runs under the first try's id, so the backend is not called twice
    request[REQUEST_ID] = claim.request_id
    reply: Reply | None = None
    failure: BaseException | None = None
    try:
        # the reply outlives the window as long as the key does: a retry after a 504,
        # however late, finds it instead of running the request again
        response, reply = await _serve(
            request, route, deadline, body, keep_reply_s=claim.ttl_s
        )
        return response
    except BaseException as exc:
        failure = exc
        raise
    finally:
        try:
            async with asyncio.timeout(REDIS_CALL_S):
                await store.finish(
                    claim, reply, failure, reply_ttl_s=request.app[SETTINGS].reply_ttl_s
                )
        except Exception as exc:  # the claim expires by itself after the window
            FAILURES.note("idempotency record not updated", exc)


async def _serve(
    request: web.Request, route: Route, deadline: Deadline, body: Body, *, keep_reply_s: int = 0
) -> tuple[web.Response, Reply]:
    """Answers from the cache (cached routes) or through the queue."""
    app = request.app
    params = dict(request.match_info)
    try:
        upstream = request_target(
            route, request.rel_url.raw_path, request.rel_url.raw_query_string, params
        )
    except Unforwardable as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    if route.cache is None:
        headers = backend_headers(request, route, app[SETTINGS])
        reply = await _queue(
            request, route, upstream, headers, body, deadline, None, keep_reply_s
        )
        return reply_response(reply, route, None), reply
    # a cached route forwards only the headers it names, and keys on their values: an
    # answer shared with everyone must not depend on anything else the client sent
    named = route.cache.forwarded
    headers = named_headers(request.headers.items(), named)
    serial = params[route.cache.key]
    target = Target(
        serial=serial,
        key=app[KEYS].cache(serial),
        field=cache.field(route.name, upstream, sorted((k.lower(), v) for k, v in headers)),
        ttl_s=route.cache.ttl_s,
        stale_s=route.cache.stale_while_revalidate_s,
        forwarded=sorted(named),
    )

    async def fetch(spec: CacheSpec) -> Reply:
        # a flight may start after this request (a refresh), so it gets its own window
        return await _queue(
            request, route, upstream, headers, EMPTY, Deadline(route.timeout_s), spec
        )

    try:
        reply, state = await app[HOTCACHE].get(target, deadline, fetch, route.name)
    except TimeoutError:
        metrics.REPLIES.labels("timeout").inc()
        raise ApiError(504, "timeout", "Request processing timed out") from None
    return reply_response(reply, route, state), reply


def _admit(request: web.Request, route: Route, deadline: Deadline) -> None:
    """Refuses, at once, what could not be answered in time or would overfill the pod."""
    app = request.app
    settings = app[SETTINGS]
    if app[WRITE_PROBE].full:
        # no worker could claim it: a 504 at the end of the window would be all it gets
        metrics.ADMISSION_REJECTIONS.labels(route.name, "redis_full").inc()
        raise redis_full("no worker could take the request")
    if app[WAITER].pending >= settings.max_pending_replies:
        raise _refused(route, "pending_limit", "this pod has too many requests waiting for replies")
    verdict = app[MONITOR].judge(route.priority, deadline.left())
    if not verdict.admitted:
        if verdict.predicted_wait_s == float("inf"):
            why = "no worker is draining the queue"
        else:
            why = (
                f"the predicted wait ({verdict.predicted_wait_s:.1f} s) and service time "
                f"({verdict.service_s:.1f} s) leave no room in the {route.timeout_s:g} s window"
            )
        raise _refused(
            route,
            "predicted_wait",
            why,
            retry_after_s=verdict.retry_after_s,
            predicted_wait_s=round(min(verdict.predicted_wait_s, 1e6), 3),
        )
    # counted now, not once SQS has it: the requests of a burst are judged before any
    # of their sends completes, and each must see the ones admitted before it
    app[MONITOR].admitted(route.priority)


def _refused(
    route: Route,
    reason: str,
    why: str,
    *,
    retry_after_s: int = 1,
    predicted_wait_s: float | None = None,
) -> ApiError:
    """503 before anything was queued, counted by reason."""
    metrics.ADMISSION_REJECTIONS.labels(route.name, reason).inc()
    extra = {} if predicted_wait_s is None else {"predicted_wait_s": predicted_wait_s}
    return ApiError(
        503,
        "overloaded",
        f"{why}; retry later",
        headers={"Retry-After": str(retry_after_s)},
        extra=extra,
    )


async def _queue(
    request: web.Request,
    route: Route,
    upstream: str,
    headers: list[tuple[str, str]],
    body: Body,
    deadline: Deadline,
    cache_spec: CacheSpec | None,
    keep_reply_s: int = 0,
) -> Reply:
    """Admission, enqueue, and the wait for the reply; raises ApiError (503, 504, 413).

    Nothing of the body is held while the reply is awaited: the envelope is built from
    the body's only copy (``Body.take``) and dropped once the queue has it, so a pod's
    memory follows the requests it is reading and sending, not those it waits for.
    """
    app = request.app
    _admit(request, route, deadline)
    if route.priority == "normal" and not await app[MONITOR].high_backlog_clear():
        raise _refused(route, "high_backlog", "the high-priority backlog is over its threshold")
    request_id = request[REQUEST_ID] if cache_spec is None else _flight_id(request)
    now = clock.now()  # read by a worker on another host: the shared reference clock
    encoded = _envelope(
        request,
        request_id,
        route,
        upstream,
        headers,
        body.take(),
        now,
        now + deadline.left(),
        cache_spec,
        keep_reply_s,
    )
    limit = app[SETTINGS].max_message_bytes
    if utf8_length(encoded) > limit:
        raise ApiError(
            413, "payload_too_large", f"request exceeds the {limit}-byte queue message limit"
        )

    waiter = app[WAITER]
    future = waiter.expect(request_id)
    try:
        try:
            early = await _enqueue(request, route, request_id, encoded, deadline, future)
        finally:
            del encoded  # the queue has it (or never will): its bytes leave the budget
            body.release()
        if early is not None:
            waiter.forget(request_id, timed_out=False)
            return early
        async with asyncio.timeout(max(0.001, deadline.left())):
            return await future
    except TimeoutError:
        waiter.forget(request_id, timed_out=True)
        metrics.REPLIES.labels("timeout").inc()
        raise ApiError(504, "timeout", "Request processing timed out") from None
    except BaseException:  # refused (ApiError), or the client went away
        waiter.forget(request_id, timed_out=False)
        raise


async def _enqueue(
    request: web.Request,
    route: Route,
    request_id: str,
    encoded: str,
    deadline: Deadline,
    future: asyncio.Future[Reply],
) -> Reply | None:
    """Puts the request on its queue. None: its reply is to be awaited (SQS has it, or
    may have it and a worker has taken it); a Reply: it is answered already. Raises
    ApiError when the request will never run.

    A send that fails or is not acknowledged within ``SQS_SEND_S`` may still have
    reached SQS (a slow acknowledgement is not a failure): the request is settled in one
    atomic step against the workers' claims (``service.tombstone``) — a tombstone, and
    503 (it will never run); or a worker has it, and its reply is awaited until the
    deadline (504 at worst, the idempotency key kept as unknown). Nothing is re-sent.
    """
    app = request.app
    wait_s = deadline.bound(SQS_SEND_S)
    started = time.monotonic()
    try:
        async with asyncio.timeout(wait_s):
            await app[QUEUES][route.priority].send(encoded)
        return None
    except asyncio.CancelledError:  # the client went away
        await _settle(request, request_id, deadline)
        raise
    except SQSEntryError as exc:
        failure: BaseException = exc
        if exc.sender_fault:
            # SQS refuses the message itself (its content or size): sending it again
            # would fail again; certainly not queued, so nothing to settle
            FAILURES.note("sqs refused a message", exc, what="enqueue")
            raise ApiError(
                400, "bad_request", f"the queue refused this request ({exc.code})"
            ) from None
    except SEND_ERRORS as exc:
        failure = exc
    maybe_queued = isinstance(failure, SendUnknown | TimeoutError)
    FAILURES.note(
        "sqs send not acknowledged" if maybe_queued else "sqs unavailable",
        failure,
        what="enqueue",
    )
    if maybe_queued and not future.done():
        # SQS may have it: a worker gets the time the api would have waited for SQS
        # (a lost answer comes back at once) before the request is settled
        left_s = wait_s - (time.monotonic() - started)
        if left_s > 0:
            await asyncio.wait({future}, timeout=left_s)
    if future.done():  # the reply came before (or instead of) the acknowledgement
        return None
    settled = await _settle(request, request_id, deadline)
    metrics.SENDS_SETTLED.labels(settled.outcome if settled else "unsettled").inc()
    if settled is not None and settled.outcome == "replied":
        return settled.reply
    if settled is not None and settled.outcome == "claimed":
        log.info("send not acknowledged, but a worker has the request: waiting")
        return None
    if settled is None and maybe_queued:
        # neither SQS nor Redis could tell: the request may run, so the client waits
        # for its reply and gets 504 at worst — never a 503 for a request that runs
        return None
    raise unavailable("sqs", "enqueue")


def _envelope(
    request: web.Request,
    request_id: str,
    route: Route,
    upstream: str,
    headers: list[tuple[str, str]],
    raw: bytes,
    now: float,
    deadline_at: float,
    cache_spec: CacheSpec | None,
    keep_reply_s: int,
) -> str:
    """The encoded envelope; the body's other forms (bytes, text) end with this call."""
    text, is_b64 = pack_body(raw)
    del raw
    try:
        return encode_request(
            RequestEnvelope(
                id=request_id,
                route=route.name,
                method=request.method,
                path=upstream,
                headers=headers,
                body=text,
                body_b64=is_b64,
                reply_to=request.app[WAITER].channel,
                deadline=deadline_at,
                enqueued_at=now,
                cache=cache_spec,
                keep_s=keep_reply_s,
            )
        )
    except UnicodeEncodeError:
        # a lone surrogate (bytes that were not UTF-8) is not text, so no message SQS
        # takes: headers are made text before (queuefront.headers.text_value), the target
        # is encoded ASCII and the body base64 — this keeps any other path from a 500
        raise ApiError(
            400, "bad_request", "the request holds characters that are not valid Unicode text"
        ) from None


def utf8_length(text: str) -> int:
    """Bytes of ``text`` in UTF-8, without a copy when it is ASCII (most envelopes)."""
    return len(text) if text.isascii() else len(text.encode())


def _flight_id(request: web.Request) -> str:
    """A cached route's fetch may serve other requests (or none): its own id."""
    return uuid.uuid4().hex


async def _settle(request: web.Request, request_id: str, deadline: Deadline) -> Settled | None:
    """``service.tombstone.settle``; None when Redis did not answer in time."""
    app = request.app
    try:
        async with asyncio.timeout(TOMBSTONE_TIMEOUT_S):
            return await settle(
                app[REDIS],
                app[KEYS],
                request_id,
                reply_ttl_s=app[SETTINGS].reply_ttl_s,
                seconds_left=deadline.left(),
            )
    except Exception as exc:
        FAILURES.note("request not settled", exc)
        return None
