"""The api's health checks: readiness (run by the probe port, ``queuefront.probes``) and
liveness (also answered on the public port).

Readiness names every shared dependency that does not answer, so an operator knows where
to look; liveness only the pod-local faults a restart cures.
"""

from __future__ import annotations

import socket

from aiohttp import web

from queuefront.redis import redis_down
from service.context import MONITOR, PUBLIC_SOCKET, REDIS, WAITER


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
