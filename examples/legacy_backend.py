"""Stand-in for the kiosk's slow legacy server ("Mixalot"): ``python -m examples.legacy_backend``.

It answers every path with JSON that echoes the request, after ``QF_DEMO_LATENCY_MS``,
and serves at most ``QF_DEMO_CONCURRENCY`` requests at once — the rest wait in line, as
on a saturated legacy server. ``GET /__stats`` counts the calls per method and path so
tests can prove that a cache hit never reached the backend.

Per-request knobs: ``X-Demo-Delay-Ms: N`` (this answer takes N ms) and
``X-Demo-Status: NNN`` (this answer has that status).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

from aiohttp import web

from queuefront.telemetry import configure_logging, get_logger

log = get_logger(__name__)

CALLS: web.AppKey[Counter[str]] = web.AppKey("calls")
GATE: web.AppKey[asyncio.Semaphore] = web.AppKey("gate", asyncio.Semaphore)
LATENCY_S: web.AppKey[float] = web.AppKey("latency_s", float)


async def stats(request: web.Request) -> web.Response:
    calls: dict[str, int] = dict(request.app[CALLS].items())
    return web.json_response({"calls": calls})


async def reset(request: web.Request) -> web.Response:
    request.app[CALLS].clear()
    return web.json_response({"calls": {}})


async def echo(request: web.Request) -> web.Response:
    request.app[CALLS][f"{request.method} {request.path}"] += 1
    delay_s = request.app[LATENCY_S]
    if "X-Demo-Delay-Ms" in request.headers:
        delay_s = int(request.headers["X-Demo-Delay-Ms"]) / 1000
    status = int(request.headers.get("X-Demo-Status", "200"))
    body = await request.read()
    async with request.app[GATE]:
        await asyncio.sleep(delay_s)
    return web.json_response(
        {
            "method": request.method,
            "path": request.path,
            "params": dict(request.query),
            "body": body.decode(errors="replace"),
            "headers": {k: v for k, v in request.headers.items() if k.lower().startswith("x-")},
        },
        status=status,
    )


def init_app(latency_ms: float = 20.0, concurrency: int = 64) -> web.Application:
    app = web.Application()
    app[CALLS] = Counter()
    app[GATE] = asyncio.Semaphore(concurrency)
    app[LATENCY_S] = latency_ms / 1000
    app.router.add_get("/__stats", stats)
    app.router.add_post("/__stats/reset", reset)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def main() -> None:
    configure_logging(os.environ.get("QF_LOG_LEVEL", "INFO"))
    latency = float(os.environ.get("QF_DEMO_LATENCY_MS", "20"))
    concurrency = int(os.environ.get("QF_DEMO_CONCURRENCY", "64"))
    port = int(os.environ.get("QF_DEMO_PORT", "9000"))
    host = os.environ.get("QF_DEMO_HOST", "127.0.0.1")
    log.info("demo backend", port=port, latency_ms=latency, concurrency=concurrency)
    web.run_app(init_app(latency, concurrency), host=host, port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
