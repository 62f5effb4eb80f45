"""The proxy path: route → auth → rate limit → cache → admission → enqueue → await reply."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from queuefront import cache, metrics
from queuefront.envelope import CacheSpec, Reply, RequestEnvelope, encode_request, pack_body
from queuefront.headers import request_headers_to_forward, response_headers_to_return
from queuefront.limits import MAX_MESSAGE_BYTES
from queuefront.routes import Route
from queuefront.telemetry import get_logger
from service.auth import AuthError, authenticate
from service.context import IDEMPOTENCY, KEYS, LIMITER, MONITOR, QUEUES, REDIS, SETTINGS, WAITER
from service.errors import PRIORITY, REQUEST_ID, ApiError
from service.idempotency import UNSAFE_METHODS

log = get_logger(__name__)

RETRY_AFTER_S = "1"


async def check_access(request: web.Request, route_name: str, *, public: bool) -> None:
    """Auth, then the rate limit: the two gates every route passes first."""
    app = request.app
    try:
        client = authenticate(request, app[SETTINGS], public=public)
    except AuthError as exc:
        raise ApiError(
            401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"}
        ) from exc
    limiter = app[LIMITER]
    if limiter is not None:
        wait_s = await limiter.retry_after_s(app[KEYS].rate(client, route_name))
        if wait_s:
            metrics.RATE_LIMITED.labels(route_name).inc()
            raise ApiError(
                429, "rate_limited", "too many requests", headers={"Retry-After": str(wait_s)}
            )


def reply_response(reply: Reply, route: Route, cache_state: str | None) -> web.Response:
    response = web.Response(
        status=reply.status, body=reply.body, headers=response_headers_to_return(reply.headers)
    )
    if cache_state is not None:
        response.headers["X-Cache"] = cache_state
    if route.edge_ttl_s is not None and 200 <= reply.status < 300:
        response.headers["Cache-Control"] = f"public, s-maxage={route.edge_ttl_s}"
    return response


async def handle(request: web.Request, route: Route) -> web.Response:
    request[PRIORITY] = route.priority
    await check_access(request, route.name, public=route.public)
    key = request.headers.get("Idempotency-Key")
    if key is None or request.method not in UNSAFE_METHODS:
        response, _ = await _proxy(request, route)
        return response
    store = request.app[IDEMPOTENCY]
    earlier = await store.claim(route.name, key, route.timeout_s)
    if earlier is not None:
        metrics.IDEMPOTENT_REPLAYS.labels(route.name).inc()
        response = reply_response(earlier, route, None)
        response.headers["Idempotent-Replayed"] = "true"
        return response
    reply: Reply | None = None
    try:
        response, reply = await _proxy(request, route)
        return response
    finally:
        await store.finish(route.name, key, reply)


async def _proxy(request: web.Request, route: Route) -> tuple[web.Response, Reply]:
    """The proxy path proper; returns the response and the reply it was made from."""
    app = request.app
    body = await request.read()
    params = dict(request.match_info)

    cache_spec: CacheSpec | None = None
    if route.cache is not None:
        key = app[KEYS].cache(params[route.cache.key])
        field = cache.field(route.name, request.path_qs)
        hit = await cache.lookup(app[REDIS], key, field)
        metrics.CACHE_REQUESTS.labels(route.name, "hit" if hit else "miss").inc()
        if hit is not None:
            return reply_response(hit, route, "HIT"), hit
        cache_spec = CacheSpec(key=key, field=field, ttl_s=route.cache.ttl_s)

    if route.priority == "normal" and not await app[MONITOR].admit():
        metrics.ADMISSION_REJECTIONS.labels(route.name).inc()
        raise ApiError(
            503,
            "overloaded",
            "high-priority backlog is over the admission threshold; retry later",
            headers={"Retry-After": RETRY_AFTER_S},
        )

    request_id = request[REQUEST_ID]
    now = time.time()
    upstream = route.upstream_path(params, request.path)
    if request.query_string:
        upstream += "?" + request.query_string
    text, is_b64 = pack_body(body)
    envelope = RequestEnvelope(
        id=request_id,
        route=route.name,
        method=request.method,
        path=upstream,
        headers=request_headers_to_forward(request.headers.items()),
        body=text,
        body_b64=is_b64,
        reply_to=app[WAITER].channel,
        deadline=now + route.timeout_s,
        enqueued_at=now,
        cache=cache_spec,
    )
    encoded = encode_request(envelope)
    if len(encoded.encode()) > MAX_MESSAGE_BYTES:
        raise ApiError(413, "payload_too_large", "request exceeds the 256 KiB message limit")

    waiter = app[WAITER]
    future = waiter.expect(request_id)
    try:
        await app[QUEUES][route.priority].send(encoded)
    except Exception as exc:
        waiter.forget(request_id, timed_out=False)
        log.warning("enqueue failed", route=route.name, error=str(exc))
        raise ApiError(
            503,
            "unavailable",
            "the queue did not accept the request",
            headers={"Retry-After": RETRY_AFTER_S},
        ) from exc
    try:
        reply = await asyncio.wait_for(future, envelope.seconds_left())
    except TimeoutError:
        waiter.forget(request_id, timed_out=True)
        metrics.REPLIES.labels("timeout").inc()
        raise ApiError(504, "timeout", "Request processing timed out") from None
    except asyncio.CancelledError:  # the client went away
        waiter.forget(request_id, timed_out=False)
        raise
    return reply_response(reply, route, "MISS" if route.cache else None), reply
