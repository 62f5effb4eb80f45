"""Stand-in for the kiosk's slow legacy server ("Mixalot"): ``python -m examples.legacy_backend``.

It answers every path with JSON that echoes the request (method, decoded and raw
path, query, body, every header). ``GET /__stats`` counts the calls per method and path
(so tests can prove that a cache hit never reached the backend) and shows how many
requests are in flight, and the most there were at once (``max_in_flight``, so tests can
prove a concurrency limit held); ``POST /__stats/reset`` starts both counts afresh.

Settings (environment, ``QF_DEMO_`` prefix, read by :class:`DemoSettings`):

- ``QF_DEMO_LATENCY_MS`` (20): service time of one request;
- ``QF_DEMO_CONCURRENCY`` (64): workers, i.e. requests served at once — the rest wait in
  line, as on a saturated legacy server. Its capacity is therefore
  ``CONCURRENCY * 1000 / LATENCY_MS`` requests per second;
- ``QF_DEMO_COLLAPSE_KNEE`` (0, off): the collapse mode of the seed's server. Once more
  than KNEE requests are in flight (served or waiting), every request that starts
  being served takes ``LATENCY_MS * in_flight / KNEE`` (thrashing: each extra request
  slows everyone down), so throughput *falls* as the line grows — congestion collapse
  rather than a plain queue;
- ``QF_DEMO_ERROR_LIMIT`` (0, off): with that many requests in flight, a new request is
  refused at once with ``QF_DEMO_ERROR_STATUS`` (503);
- ``QF_DEMO_PORT`` (9000), ``QF_DEMO_HOST`` (127.0.0.1), ``QF_LOG_LEVEL`` (INFO).

Without the collapse settings it is a plain bounded-concurrency server, as it always was.
Per-request knobs: ``X-Demo-Delay-Ms: N`` (this answer's service time is N ms),
``X-Demo-Status: NNN`` (this answer has that status) and
``X-Demo-Response-Headers: {"Name": "value"}`` (this answer carries those headers).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from queuefront.telemetry import configure_logging, get_logger

log = get_logger(__name__)


class DemoSettings(BaseSettings):
    """The demo backend's settings; the collapse mode is off unless KNEE/LIMIT are set."""

    model_config = SettingsConfigDict(env_prefix="QF_DEMO_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = 9000
    latency_ms: float = Field(default=20.0, ge=0)
    concurrency: int = Field(default=64, ge=1)
    collapse_knee: int = Field(default=0, ge=0)
    error_limit: int = Field(default=0, ge=0)
    error_status: int = Field(default=503, ge=400, le=599)
    # shared with the other processes, hence no QF_DEMO_ prefix
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias="QF_LOG_LEVEL"
    )


@dataclass
class Load:
    """What the server holds right now: requests accepted and not yet answered."""

    in_flight: int = 0
    max_in_flight: int = 0
    """The most requests held at once since start (or the last reset)."""


CALLS: web.AppKey[Counter[str]] = web.AppKey("calls")
GATE: web.AppKey[asyncio.Semaphore] = web.AppKey("gate", asyncio.Semaphore)
SETTINGS: web.AppKey[DemoSettings] = web.AppKey("settings", DemoSettings)
LOAD: web.AppKey[Load] = web.AppKey("load", Load)


async def stats(request: web.Request) -> web.Response:
    calls: dict[str, int] = dict(request.app[CALLS].items())
    load = request.app[LOAD]
    return web.json_response(
        {"calls": calls, "in_flight": load.in_flight, "max_in_flight": load.max_in_flight}
    )


async def reset(request: web.Request) -> web.Response:
    request.app[CALLS].clear()
    load = request.app[LOAD]
    load.max_in_flight = load.in_flight
    return web.json_response({"calls": {}})


def service_time_s(base_s: float, in_flight: int, knee: int) -> float:
    """One request's service time with ``in_flight`` requests held (collapse past the knee)."""
    if knee and in_flight > knee:
        return base_s * in_flight / knee
    return base_s


async def echo(request: web.Request) -> web.Response:
    settings, load = request.app[SETTINGS], request.app[LOAD]
    request.app[CALLS][f"{request.method} {request.path}"] += 1
    if settings.error_limit and load.in_flight >= settings.error_limit:
        return web.json_response(
            {"error": "overloaded", "in_flight": load.in_flight}, status=settings.error_status
        )
    base_s = settings.latency_ms / 1000
    if "X-Demo-Delay-Ms" in request.headers:
        base_s = int(request.headers["X-Demo-Delay-Ms"]) / 1000
    status = int(request.headers.get("X-Demo-Status", "200"))
    extra = json.loads(request.headers.get("X-Demo-Response-Headers", "{}"))
    load.in_flight += 1
    load.max_in_flight = max(load.max_in_flight, load.in_flight)
    try:
        body = await request.read()
        async with request.app[GATE]:
            await asyncio.sleep(service_time_s(base_s, load.in_flight, settings.collapse_knee))
    finally:
        load.in_flight -= 1
    return web.json_response(
        headers=extra,
        data={
            "method": request.method,
            "path": request.path,
            # the request line's target exactly as it arrived (still percent-encoded)
            "raw_path": request.raw_path,
            "params": dict(request.query),
            "body": body.decode(errors="replace"),
            # every header, so a test can see what should never have been forwarded
            "headers": dict(request.headers.items()),
        },
        status=status,
    )


def init_app(
    latency_ms: float = 20.0, concurrency: int = 64, settings: DemoSettings | None = None
) -> web.Application:
    """The app; ``settings`` (when given) wins over ``latency_ms`` and ``concurrency``."""
    if settings is None:
        settings = DemoSettings(latency_ms=latency_ms, concurrency=concurrency)
    app = web.Application()
    app[CALLS] = Counter()
    app[GATE] = asyncio.Semaphore(settings.concurrency)
    app[SETTINGS] = settings
    app[LOAD] = Load()
    app.router.add_get("/__stats", stats)
    app.router.add_post("/__stats/reset", reset)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def main() -> None:
    settings = DemoSettings()
    configure_logging(settings.log_level)
    log.info("demo backend", **settings.model_dump())
    web.run_app(
        init_app(settings=settings),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
