"""The priority worker process: wires the worker to SQS, Redis and the backend, and serves it."""

from __future__ import annotations

import os
import socket
import uuid

import aiohttp
import uvloop

from queuefront import metrics, tasks
from queuefront.consumer import VisibilityKeeper, serve, visibility_timeouts
from queuefront.drain import DrainReporter
from queuefront.redis import open_redis
from queuefront.routes import load_routes
from queuefront.settings import Settings
from queuefront.sqs import open_client, open_with_dlqs
from queuefront.telemetry import configure_logging
from workers.priority.backend import Backend
from workers.priority.handback import HandBack
from workers.priority.handle import LEASE_REFUSAL_REASONS, WORKER_OUTCOMES
from workers.priority.leases import BackendLeases
from workers.priority.loop import Priority, PriorityWorker
from workers.priority.trust import REASONS, MessageCheck


async def main_async(settings: Settings) -> None:
    redis = open_redis(settings)
    keys = settings.keys
    worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    connector = aiohttp.TCPConnector(limit=settings.worker_concurrency, ttl_dns_cache=60)
    async with (
        open_client(settings, pool=settings.worker_concurrency + 10) as client,
        aiohttp.ClientSession(connector=connector, auto_decompress=True) as http,
    ):
        names: dict[Priority, str] = {"high": settings.queue_high, "normal": settings.queue_normal}
        queues, dlqs = await open_with_dlqs(client, settings, names)
        metrics.prime_consumer([q.name for q in queues.values()], WORKER_OUTCOMES)
        metrics.prime_refusals([q.name for q in queues.values()], REASONS)
        keeper = VisibilityKeeper(await visibility_timeouts(*queues.values()))
        backend = Backend(settings.backend_url, http, settings.max_reply_bytes)
        handback = HandBack(redis, keys, worker_id, settings.reply_ttl_s)
        reporter = DrainReporter(
            redis, keys, worker_id, settings.worker_concurrency, settings.backend_max_concurrency
        )
        check = MessageCheck(load_routes(settings.routes_file), keys)
        leases = None
        if settings.backend_max_concurrency > 0:
            # its own client for the release channel: a pub/sub read waits for messages
            subscriber = open_redis(settings, socket_timeout_s=None)
            limit = settings.backend_max_concurrency
            leases = BackendLeases(redis, subscriber, keys, worker_id, limit)
            metrics.prime_lease_refusals([q.name for q in queues.values()], LEASE_REFUSAL_REASONS)
        worker = PriorityWorker(
            settings, queues, handback, reporter, backend, keeper, check, leases
        )
        try:
            async with tasks.running(reporter.run(), name="drain-report"):
                await serve(worker, settings=settings, redis=redis, dlqs=dlqs)
        finally:
            await redis.aclose()
            if leases is not None:
                await subscriber.aclose()


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    uvloop.run(main_async(settings))


if __name__ == "__main__":
    main()
