"""The small HTTP server of the worker and writer: ``/healthz``, ``/readyz``, ``/metrics``.

The api serves these on its own port; background processes need a port too, so that
Prometheus can scrape them and ECS / compose can health-check them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

ReadyCheck = Callable[[], Awaitable[list[str]]]
"""Returns the names of the dependencies that are down (empty: ready)."""

READY_CHECK: web.AppKey[ReadyCheck] = web.AppKey("ready_check")


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    down = await request.app[READY_CHECK]()
    if down:
        return web.json_response(
            {
                "error": "not_ready",
                "message": f"dependencies down: {', '.join(down)}",
                "down": down,
            },
            status=503,
        )
    return web.json_response({"status": "ready"})


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def start_probe_server(port: int, ready: ReadyCheck) -> web.AppRunner:
    app = web.Application()
    app[READY_CHECK] = ready
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner
