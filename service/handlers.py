"""Built-in routes: health, readiness, metrics and cache invalidation."""

from __future__ import annotations

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from queuefront import cache, metrics
from queuefront.redis import redis_down
from service.context import KEYS, MONITOR, REDIS, WAITER
from service.errors import ApiError
from service.proxy import check_access


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """503 naming every dependency that does not answer, so an operator knows where to look."""
    app = request.app
    down = await redis_down(app[REDIS])
    if not app[WAITER].connected:
        down.append("redis-pubsub")
    if not app[MONITOR].healthy:
        down.append("sqs")
    if down:
        raise ApiError(
            503,
            "not_ready",
            f"dependencies down: {', '.join(down)}",
            headers={"Retry-After": "5"},
            extra={"down": down},
        )
    return web.json_response({"status": "ready"})


async def metrics_endpoint(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


class InvalidateBody(msgspec.Struct, forbid_unknown_fields=True):
    serial: str


_invalidate_decoder = msgspec.json.Decoder(InvalidateBody)


async def invalidate(request: web.Request) -> web.Response:
    await check_access(request, "invalidate_data", public=False)
    try:
        body = _invalidate_decoder.decode(await request.read())
    except msgspec.DecodeError as exc:
        raise ApiError(400, "bad_request", f'body must be {{"serial": "…"}}: {exc}') from exc
    if not body.serial:
        raise ApiError(400, "bad_request", "serial must not be empty")
    dropped = await cache.invalidate(request.app[REDIS], request.app[KEYS], body.serial)
    metrics.CACHE_INVALIDATIONS.inc()
    return web.json_response({"serial": body.serial, "invalidated": dropped})
