"""``init_app()``: the api pod, with one ``cleanup_ctx`` per client's lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

from aiohttp import web

from queuefront import clock, heap, metrics, probes
from queuefront.cache import decode_event
from queuefront.redis import open_redis
from queuefront.routes import Route, load_routes
from queuefront.settings import Settings
from queuefront.sqs import (
    API_ATTEMPTS,
    API_CONNECT_TIMEOUT_S,
    API_READ_TIMEOUT_S,
    QueueOps,
    open_client,
)
from queuefront.tally import TallyStore
from queuefront.telemetry import get_logger
from service import auth, health, ingest, invalidate, openapi, proxy, tally
from service.admission import BacklogMonitor
from service.bodies import Budget
from service.context import (
    BODY_BUDGET,
    HOTCACHE,
    IDEMPOTENCY,
    KEYS,
    LIMITER,
    MONITOR,
    PACKERS,
    POD_ID,
    QUEUES,
    REDIS,
    ROUTES,
    SETTINGS,
    TALLIES,
    WAITER,
    WRITE_PROBE,
)
from service.errors import request_context
from service.hotcache import HotCache, LocalTier
from service.idempotency import Idempotency
from service.packer import Packer
from service.ratelimit import RateLimits
from service.redisfull import WriteProbe
from service.replies import Channel, ReplyWaiter
from service.scaling_signal import ScalingSignal, parse_dimensions

log = get_logger(__name__)


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[REDIS] = open_redis(settings)
    app[TALLIES] = TallyStore(app[REDIS], app[KEYS], settings.tally_ttl_s)
    app[IDEMPOTENCY] = Idempotency(
        app[REDIS], app[KEYS], settings.idempotency_ttl_s, settings.idempotency_anon_ttl_s
    )
    app[LIMITER] = RateLimits(app[REDIS], settings)
    probe = WriteProbe(app[REDIS], app[KEYS].write_probe(app[POD_ID]))
    probe.start()
    app[WRITE_PROBE] = probe
    # deadlines, drain reports and cache expiry are judged on Redis's clock
    async with clock.kept_in_sync(app[REDIS]):
        yield
    await probe.stop()
    await app[REDIS].aclose()


async def sqs_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # the api only sends and reads attributes: short timeouts, no retry that could
    # outlive a request's wait for SQS (service.deadlines.SQS_SEND_S)
    async with open_client(
        settings,
        connect_timeout_s=API_CONNECT_TIMEOUT_S,
        read_timeout_s=API_READ_TIMEOUT_S,
        attempts=API_ATTEMPTS,
    ) as client:
        app[QUEUES] = {
            "high": await QueueOps.open(client, settings.queue_high, settings.send_linger_s),
            "normal": await QueueOps.open(client, settings.queue_normal, settings.send_linger_s),
        }
        ingest_routes = [r.name for r in app[ROUTES].routes if r.kind == "ingest"]
        if ingest_routes:
            # group commit, not a linger: an item's 202 waits for its send, so a linger
            # would be added to every vote while capping how many one call can carry
            app[QUEUES]["ingest"] = await QueueOps.open(client, settings.queue_ingest, None)
        app[PACKERS] = {
            name: Packer(
                name,
                app[QUEUES]["ingest"],
                max_items=settings.ingest_pack_max,
                max_bytes=settings.max_message_bytes,
            )
            for name in ingest_routes
        }
        monitor = BacklogMonitor(
            {"high": app[QUEUES]["high"], "normal": app[QUEUES]["normal"]},
            app[REDIS],
            app[KEYS],
            threshold=settings.admission_threshold,
            wait_s=settings.admission_wait_s,
            poll_s=settings.backlog_poll_s,
            predictive=settings.admission_predictive,
        )
        await monitor.start()
        app[MONITOR] = monitor
        yield
        await monitor.stop()
        for packer in app[PACKERS].values():
            await packer.close()
        for ops in app[QUEUES].values():
            await ops.close()


async def scaling_signal_ctx(app: web.Application) -> AsyncIterator[None]:
    """The pod's scaling signal on stdout (service/scaling_signal.py), when asked for."""
    settings = app[SETTINGS]
    if settings.scaling_signal_interval_s <= 0:
        yield
        return
    signal = ScalingSignal(
        app[MONITOR],
        lambda: app[WAITER].pending,
        interval_s=settings.scaling_signal_interval_s,
        namespace=settings.scaling_signal_namespace,
        dimensions=parse_dimensions(settings.scaling_signal_dimensions),
    )
    await signal.start()
    yield
    await signal.stop()


async def probes_ctx(app: web.Application) -> AsyncIterator[None]:
    """``/readyz`` and ``/metrics`` on the probe port, away from the public one."""
    runner = await probes.start_probe_server(
        app[SETTINGS].metrics_port,
        partial(health.ready, app),
        partial(health.live, app),
        unix_path=app.get(probes.PROBE_SOCKET),  # one of several processes: its supervisor's
    )
    yield
    await runner.cleanup()


async def replies_ctx(app: web.Application) -> AsyncIterator[None]:
    """The pod's one subscription: its reply channel and the cache's events."""
    settings, keys, pod_id = app[SETTINGS], app[KEYS], app[POD_ID]
    subscriber = open_redis(
        settings, client_name=keys.subscriber_name(pod_id), socket_timeout_s=None
    )
    hot = HotCache(
        app[REDIS],
        keys,
        pod_id,
        LocalTier(settings.local_cache_entries, settings.local_cache_bytes),
        lease_s=settings.cache_lease_s,
    )
    app[HOTCACHE] = hot
    events = Channel(
        on_message=lambda data: hot.on_event(decode_event(data)),
        on_subscribed=hot.on_resubscribe,
    )
    waiter = ReplyWaiter(
        app[REDIS],
        subscriber,
        keys,
        pod_id,
        settings.reply_ttl_s,
        channels={keys.cache_events(): events},
    )
    await waiter.start()
    app[WAITER] = waiter
    yield
    await waiter.stop()
    await hot.close()
    await subscriber.aclose()


def add_routes(app: web.Application, routes: list[Route]) -> None:
    app.router.add_get("/healthz", probes.healthz, name="healthz")  # the same liveness
    app.router.add_post("/api/cache/invalidate", invalidate.invalidate, name="invalidate_data")
    handler_of = {
        "proxy": proxy.handle,
        "ingest": ingest.handle_ingest,
        "tally": tally.handle_tally,
    }
    for route in routes:
        handler = partial(handler_of[route.kind], route=route)
        app.router.add_route(route.method, route.path, handler, name=route.name)


async def _settle_heap(_: web.Application) -> None:
    heap.settle()


def init_app(settings: Settings | None = None) -> web.Application:
    settings = settings or Settings()
    table = load_routes(settings.routes_file)
    # the largest body that can still fit in one SQS message; bigger ones get 413 early
    app = web.Application(
        middlewares=[request_context], client_max_size=settings.max_message_bytes
    )
    app[SETTINGS] = settings
    app[ROUTES] = table
    app[BODY_BUDGET] = Budget(settings.max_pending_bytes)
    app[KEYS] = settings.keys
    app[POD_ID] = settings.pod_id
    live: probes.LiveCheck = partial(health.live, app)
    app[probes.LIVE_CHECK] = live
    app.cleanup_ctx.extend([redis_ctx, replies_ctx, sqs_ctx, scaling_signal_ctx, probes_ctx])
    # after the contexts' start-up (aiohttp runs them first): what they built is frozen too
    app.on_startup.append(_settle_heap)
    add_routes(app, table.routes)
    openapi.install(app, table, settings)
    metrics.prime_api([(r.name, r.kind, r.priority, r.cache is not None) for r in table.routes])
    auth.check_configuration(settings)
    parse_dimensions(settings.scaling_signal_dimensions)  # a malformed one stops the start
    log.info("api configured", pod_id=app[POD_ID], routes=[r.name for r in table.routes])
    return app
