"""The proxy path: route → gates → cache → admission → enqueue → await the reply.

Every step runs under the request's deadline (its route's window, ``timeout_s``): Redis
and SQS calls through ``service.deps.bounded``, the reply wait for whatever is left.
A dependency that is slow or down answers 503 fast, an overloaded queue 503 at once
(``service.admission``), a reply that does not come in time 504 — never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from aiohttp import web

from queuefront import cache, metrics
from queuefront.envelope import (
    CacheSpec,
    Reply,
    RequestEnvelope,
    encode_reply,
    encode_request,
    pack_body,
)
from queuefront.failures import FailureLog
from queuefront.headers import named_headers
from queuefront.routes import Route
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
from service.deps import REDIS_CALL_S, SQS_SEND_S, Deadline, bounded, guarded
from service.errors import PRIORITY, REQUEST_ID, ApiError, redis_full
from service.forwarding import backend_headers
from service.gates import check_access, read_body
from service.hotcache import Target
from service.idempotency import UNSAFE_METHODS, fingerprint, request_key

log = get_logger(__name__)
FAILURES = FailureLog(log)

TOMBSTONE_TIMEOUT_S = 0.5


def reply_response(reply: Reply, route: Route, cache_state: str | None) -> web.Response:
    # the worker kept only the headers that may be returned (workers/backend.py)
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
        response, reply = await _serve(request, route, deadline, body)
        return response
    except BaseException as exc:
        failure = exc
        raise
    finally:
        try:
            async with asyncio.timeout(REDIS_CALL_S):
                await store.finish(claim, reply, failure)
        except Exception as exc:  # the claim expires by itself after the window
            FAILURES.note("idempotency record not updated", exc)


async def _serve(
    request: web.Request, route: Route, deadline: Deadline, body: Body
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
        reply = await _queue(request, route, upstream, headers, body, deadline, None)
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
                f"the predicted wait ({verdict.predicted_wait_s:.1f} s) leaves no room "
                f"in the {route.timeout_s:g} s window"
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
    now = time.time()
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
    )
    limit = app[SETTINGS].max_message_bytes
    if utf8_length(encoded) > limit:
        raise ApiError(
            413, "payload_too_large", f"request exceeds the {limit}-byte queue message limit"
        )

    waiter = app[WAITER]
    future = waiter.expect(request_id)
    try:
        async with guarded("sqs", "enqueue", deadline.bound(SQS_SEND_S)):
            await app[QUEUES][route.priority].send(encoded)
    except BaseException:
        waiter.forget(request_id, timed_out=False)
        # the send may still complete after we gave up: a stored answer tells the worker
        # that this request is settled, so it never calls the backend for it
        await _tombstone(request, request_id)
        raise
    finally:
        del encoded  # the queue has it (or refused it): its bytes leave the budget
        body.release()
    try:
        async with asyncio.timeout(max(0.001, deadline.left())):
            return await future
    except TimeoutError:
        waiter.forget(request_id, timed_out=True)
        metrics.REPLIES.labels("timeout").inc()
        raise ApiError(504, "timeout", "Request processing timed out") from None
    except asyncio.CancelledError:  # the client went away
        waiter.forget(request_id, timed_out=False)
        raise


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
) -> str:
    """The encoded envelope; the body's other forms (bytes, text) end with this call."""
    text, is_b64 = pack_body(raw)
    del raw
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
        )
    )


def utf8_length(text: str) -> int:
    """Bytes of ``text`` in UTF-8, without a copy when it is ASCII (most envelopes)."""
    return len(text) if text.isascii() else len(text.encode())


def _flight_id(request: web.Request) -> str:
    """A cached route's fetch may serve other requests (or none): its own id."""
    return uuid.uuid4().hex


async def _tombstone(request: web.Request, request_id: str) -> None:
    app = request.app
    reply = Reply(id=request_id, status=503, headers=[], body=b"")
    with contextlib.suppress(Exception):
        async with asyncio.timeout(TOMBSTONE_TIMEOUT_S):
            await app[REDIS].set(
                app[KEYS].reply(request_id),
                encode_reply(reply),
                nx=True,
                ex=app[SETTINGS].reply_ttl_s,
            )

