"""The writer process: wires the writer to SQS, Postgres and Redis, and serves it."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import asyncpg
import uvloop
from redis.asyncio import Redis

from queuefront import metrics
from queuefront.consumer import VisibilityKeeper, serve, visibility_timeouts
from queuefront.outbox import TallyOutbox
from queuefront.redis import open_redis
from queuefront.revive import Reviver
from queuefront.routes import load_routes
from queuefront.settings import Settings
from queuefront.sqs import open_client, open_with_dlqs
from queuefront.tally import TallyStore
from queuefront.telemetry import configure_logging, get_logger
from workers.writer.check import SinkMismatch, check_sinks
from workers.writer.loop import Writer
from workers.writer.store import BatchStore, CredentialsRefused

log = get_logger(__name__)

CONNECT_TIMEOUT_S = 10.0
"""Longest a new Postgres connection may take to open (asyncpg's default is 60 s)."""


async def main_async(settings: Settings) -> None:
    routes = load_routes(settings.routes_file)
    redis: Redis = open_redis(settings)
    # every statement under a deadline: a statement that hangs (a lock never granted, a
    # connection gone silent) is cancelled and raises TimeoutError, which the store
    # treats as an outage; without it the batch would be held for as long as it hangs
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=1,
        max_size=4,
        command_timeout=settings.db_command_timeout_s,
        timeout=CONNECT_TIMEOUT_S,
    )
    try:
        await check_sinks(pool, routes)
        async with open_client(settings) as client:
            queues, dlqs = await open_with_dlqs(client, settings, {"ingest": settings.queue_ingest})
            queue, dlq = queues["ingest"], dlqs[0]
            # API Gateway's direct messages carry their route, request id and path
            # parameters as message attributes (workers.writer.direct)
            queue.message_attributes = ("All",)
            tables = tuple(r.sink.table for r in routes.sinks.values() if r.sink is not None)
            metrics.prime_consumer([queue.name], ("released",), tables)
            keeper = VisibilityKeeper(await visibility_timeouts(queue))
            keys = settings.keys
            tallies = TallyStore(redis, keys, settings.tally_ttl_s)
            reviver = Reviver(pool, tallies, keys, routes.sinks)
            outbox = TallyOutbox(pool, tallies, reviver.revive)
            store = BatchStore(pool, outbox, keys)
            writer = Writer(settings, queue, store, outbox, routes, keeper, dlq)
            await serve(
                writer,
                settings=settings,
                redis=redis,
                dlqs=dlqs,
                also_down=writer.down,
            )
            if writer.credentials_refused is not None:
                raise writer.credentials_refused
    finally:
        await pool.close()
        await redis.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        uvloop.run(main_async(settings))
    except SinkMismatch as exc:
        log.error("the route table's sinks do not match the database", problems=str(exc))
        sys.exit(f"writer not started: {exc}")
    except CredentialsRefused as exc:
        # exit non-zero: ECS replaces the task, and the new one reads the current secret
        sys.exit(f"writer stopped: the database refused its credentials: {exc.__cause__!r}")


if __name__ == "__main__":
    main()
