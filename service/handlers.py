"""Built-in routes of the public port: liveness and cache invalidation.

Readiness and metrics are on the probe port (``queuefront.probes``); ``ready`` is the
api's readiness check that port runs.
"""

from __future__ import annotations

import socket

import msgspec
from aiohttp import web

from queuefront import metrics
from queuefront.redis import redis_down
from service.auth import INVALIDATE
from service.context import HOTCACHE, MONITOR, PUBLIC_SOCKET, REDIS, WAITER
from service.deadlines import REDIS_CALL_S, Deadline, bounded
from service.errors import ApiError
from service.gates import check_access, read_body


async def ready(app: web.Application) -> list[str]:
    """Every dependency that does not answer, so an operator knows where to look."""
    down = await redis_down(app[REDIS])
    if not app[WAITER].connected:
        down.append("redis-pubsub")
    if not app[MONITOR].healthy:
        down.append("sqs")
    public = app.get(PUBLIC_SOCKET)
    if public is not None and not listening(public):
        down.append("public-port")
    return down


def listening(sock: socket.socket) -> bool:
    """Whether the server listens on ``sock`` yet. The probe server starts with the pod's
    clients, before aiohttp starts the public site: without this a pod said it was ready
    while its public port still refused connections (a client that trusted ``/readyz``,
    like the tests' launcher, got "connection refused" on a loaded machine)."""
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except OSError:  # closed
        return False


INVALIDATE_WINDOW_S = 2.0
INVALIDATE_MAX_BODY_BYTES = 4096
"""``{"serial": "…"}`` needs a few dozen bytes."""


LISTENER_GRACE_S = 30.0
"""How long the reply listener may stay disconnected, with Redis answering, before the
pod counts as broken (reconnects take well under a second)."""


async def live(app: web.Application) -> list[str]:
    """Pod-local faults that a restart cures: the reply listener is gone, or has been
    away for long while Redis itself answers (a shared outage is readiness's business)."""
    waiter = app[WAITER]
    if waiter.listener_dead:
        return ["reply-listener"]
    if waiter.disconnected_for_s() > LISTENER_GRACE_S and not await redis_down(app[REDIS]):
        return ["reply-listener"]
    return []


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
