"""The gates every route passes first: authentication, then the rate limit.

Kept apart from the route kinds (proxy, ingest, tally, built-ins) that all call it, so
no route module has to import another to reach them.

A request whose credentials fail is charged too — to the address it came from, like an
anonymous request, never to the identity its credentials claim: a client that hammers
with bad keys or forged tokens runs out of budget (429), but no one can spend a real
user's budget (and lock them out) by sending that user's name with a wrong secret. A
request with good credentials is never held back by the failures of others behind the
same address: it is checked before any failure budget is.
"""

from __future__ import annotations

from aiohttp import web

from queuefront import metrics
from service import bodies
from service.auth import (
    CALL,
    AuthError,
    Forbidden,
    Identity,
    address_identity,
    authenticate,
    authorize,
)
from service.context import BODY_BUDGET, KEYS, LIMITER, SETTINGS
from service.deadlines import REDIS_CALL_S, bounded
from service.errors import ApiError


async def check_access(
    request: web.Request, route_name: str, *, public: bool, permission: str = CALL
) -> Identity:
    """Auth, then the rate limit; raises the 401, 403 or 429 that stops the request.

    Returns the client's identity: it scopes the rate limit and idempotency keys.
    """
    app = request.app
    try:
        client = authenticate(request, app[SETTINGS], public=public)
    except AuthError as exc:
        await _charge(request, address_identity(request, app[SETTINGS]), route_name)
        raise ApiError(
            401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"}
        ) from exc
    await _charge(request, client, route_name)
    if not public:
        try:
            authorize(client, permission)
        except Forbidden as exc:
            raise ApiError(403, "forbidden", str(exc)) from exc
    return client


async def _charge(request: web.Request, client: Identity, route_name: str) -> None:
    """One request against ``client``'s budget on the route; 429 when it is spent."""
    app = request.app
    limiter = app[LIMITER].of(anonymous=client.anonymous)
    if limiter is None:
        return
    wait_s = await bounded(
        "redis",
        "rate limit",
        REDIS_CALL_S,
        limiter.retry_after_s(app[KEYS].rate(client.name, route_name)),
    )
    if wait_s:
        metrics.RATE_LIMITED.labels(route_name).inc()
        raise ApiError(
            429, "rate_limited", "too many requests", headers={"Retry-After": str(wait_s)}
        )


async def read_body(
    request: web.Request, route_name: str, *, max_body_bytes: int | None, window_s: float
) -> bodies.Body:
    """The body, within the route's limit (at most ``QF_MAX_MESSAGE_BYTES``: no larger
    one fits in a queue message) and the process's budget; 413, 503 or 408 otherwise.
    The caller releases it (``Body.release``) as soon as it holds nothing of it."""
    app = request.app
    ceiling = app[SETTINGS].max_message_bytes
    return await bodies.read(
        request,
        app[BODY_BUDGET],
        limit_bytes=min(max_body_bytes or ceiling, ceiling),
        route=route_name,
        window_s=window_s,
    )
