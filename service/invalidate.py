"""Cache invalidation, a built-in route of the public port: ``POST /api/cache/invalidate``
drops every cached entry of a serial (``service.hotcache``), with a permission of its own."""

from __future__ import annotations

import msgspec
from aiohttp import web

from queuefront import metrics
from service.auth import INVALIDATE
from service.context import HOTCACHE
from service.deadlines import REDIS_CALL_S, Deadline, bounded
from service.errors import ApiError
from service.gates import check_access, read_body

INVALIDATE_WINDOW_S = 2.0
INVALIDATE_MAX_BODY_BYTES = 4096
"""``{"serial": "…"}`` needs a few dozen bytes."""


class InvalidateBody(msgspec.Struct, forbid_unknown_fields=True):
    serial: str


_invalidate_decoder = msgspec.json.Decoder(InvalidateBody)


async def invalidate(request: web.Request) -> web.Response:
    await check_access(request, "invalidate_data", public=False, permission=INVALIDATE)
    held = await read_body(
        request,
        "invalidate_data",
        max_body_bytes=INVALIDATE_MAX_BODY_BYTES,
        window_s=INVALIDATE_WINDOW_S,
    )
    try:
        body = _invalidate_decoder.decode(held.data)
    except msgspec.DecodeError as exc:
        raise ApiError(400, "bad_request", f'body must be {{"serial": "…"}}: {exc}') from exc
    finally:
        held.release()
    if not body.serial:
        raise ApiError(400, "bad_request", "serial must not be empty")
    app = request.app
    deadline = Deadline(INVALIDATE_WINDOW_S)
    dropped = await bounded(
        "redis",
        "invalidation",
        deadline.bound(REDIS_CALL_S),
        app[HOTCACHE].invalidate(body.serial),
    )
    metrics.CACHE_INVALIDATIONS.inc()
    return web.json_response({"serial": body.serial, "invalidated": dropped})
