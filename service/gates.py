"""The gates every route passes first: authentication, then the rate limit.

Kept apart from the route kinds (proxy, ingest, tally, built-ins) that all call it, so
no route module has to import another to reach them.
"""

from __future__ import annotations

from aiohttp import web

from queuefront import metrics
from service.auth import CALL, AuthError, Forbidden, Identity, authenticate, authorize
from service.context import KEYS, LIMITER, SETTINGS
from service.deps import REDIS_CALL_S, bounded
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
        if not public:
            authorize(client, permission)
    except AuthError as exc:
        raise ApiError(
            401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"}
        ) from exc
    except Forbidden as exc:
        raise ApiError(403, "forbidden", str(exc)) from exc
    limiter = app[LIMITER]
    if limiter is not None:
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
    return client
