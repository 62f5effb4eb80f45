"""The probe routes of every process: ``/healthz``, ``/readyz``, ``/metrics``.

One set of routes, served by every process (api, worker, writer) on its own probe port
(``QF_METRICS_PORT``), never on the api's public port: readiness names the dependencies
that are down and ``/metrics`` shows traffic, neither of which is the public's business.
Prometheus scrapes the probe port; ECS, the ALB and compose health-check it.

Two questions, two routes. ``/healthz`` (liveness): is this process able to do its job
at all — false only for faults a restart cures (a reply listener that died while Redis
answers). ``/readyz`` (readiness): are its dependencies answering. The ALB and ECS use
liveness: a Redis outage makes every pod unready at once, and replacing them all would
cure nothing; a pod whose own listener is gone is replaced.

Several api processes in one container (``QF_API_PROCESSES``) answer these routes
once, from their supervisor: each process serves its own on a unix socket
(``PROBE_SOCKET``) that only the supervisor asks, and the supervisor's port answers for
all of them (``service.supervisor``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

ReadyCheck = Callable[[], Awaitable[list[str]]]
"""Returns the names of the dependencies that are down (empty: ready)."""
LiveCheck = Callable[[], Awaitable[list[str]]]
"""Returns the names of the process's own parts that are broken (empty: alive)."""

READY_CHECK: web.AppKey[ReadyCheck] = web.AppKey("ready_check")
LIVE_CHECK: web.AppKey[LiveCheck] = web.AppKey("live_check")
METRICS_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)
PROBE_SOCKET = web.AppKey("probe_socket", str)
"""Set on an api app run by the supervisor: serve the probe routes on this unix socket
instead of ``QF_METRICS_PORT``."""
NOT_READY_RETRY_AFTER_S = "5"


async def _nothing_broken() -> list[str]:
    return []


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process runs, its event loop answers and nothing of its own broke."""
    check = request.app.get(LIVE_CHECK, _nothing_broken)
    broken = await check()
    if broken:
        return web.json_response(
            {"error": "not_alive", "message": f"broken: {', '.join(broken)}", "broken": broken},
            status=503,
        )
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
            headers={"Retry-After": NOT_READY_RETRY_AFTER_S},
        )
    return web.json_response({"status": "ready"})


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def start_probe_server(
    port: int,
    ready: ReadyCheck,
    live: LiveCheck = _nothing_broken,
    *,
    unix_path: str | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> web.AppRunner:
    """Serves the probe routes on ``port`` (all interfaces: Prometheus and the health
    checks come from other hosts), or on the unix socket ``unix_path`` when given; the
    caller cleans the runner up. ``/metrics`` shows ``registry``."""
    app = web.Application()
    app[READY_CHECK] = ready
    app[LIVE_CHECK] = live
    app[METRICS_REGISTRY] = registry
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site: web.BaseSite = (
        web.UnixSite(runner, unix_path)
        if unix_path is not None
        else web.TCPSite(runner, "0.0.0.0", port)
    )
    await site.start()
    return runner
