"""Operator commands: ``python -m queuefront.admin reconcile | redrive``.

``reconcile`` rebuilds the live tallies from Postgres. It holds the writers' tally lock
exclusively (writers take it shared in every insert transaction), marks every batch
still in the outbox as applied, counts, and overwrites the Redis hashes: no increment
can land on top of the rebuilt counts, and none is lost.

``redrive`` moves the messages of a queue's DLQ back to the queue (after the cause of
their failure is fixed), in batches of 10; a message is deleted from the DLQ only
after the queue has accepted it.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict

import asyncpg

from queuefront import outbox, tallytext
from queuefront.redis import open_redis
from queuefront.routes import load_routes
from queuefront.settings import Settings
from queuefront.sink import quote_ident
from queuefront.sqs import QueueOps, open_client
from queuefront.tally import TallyStore
from queuefront.telemetry import configure_logging, get_logger

log = get_logger(__name__)


async def reconcile(settings: Settings) -> dict[str, int]:
    """Returns the number of tally hashes rebuilt per route."""
    routes = load_routes(settings.routes_file)
    keys = settings.keys
    redis = open_redis(settings)
    store = TallyStore(redis, keys, settings.tally_ttl_s)
    rebuilt: dict[str, int] = {}
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            await outbox.lock_exclusive(conn)
            for batch_id in await outbox.take_all(conn):
                await store.mark_applied(batch_id)
            for route in routes.sinks.values():
                if route.tally is None or route.sink is None:
                    continue
                group, count = quote_ident(route.tally.group), quote_ident(route.tally.count)
                group_kind = route.sink.fields[route.tally.group].type
                count_kind = route.sink.fields[route.tally.count].type
                rows = await conn.fetch(
                    f"SELECT {group}::text AS g, {count}::text AS c, count(*) AS n, "
                    "extract(epoch FROM now() - max(received_at))::float8 AS age_s "
                    f"FROM {quote_ident(route.sink.table)} GROUP BY 1, 2"
                )
                counts: dict[str, dict[str, int]] = defaultdict(dict)
                quiet_s: dict[str, float] = {}
                for r in rows:
                    key = keys.tally(route.name, tallytext.from_postgres(r["g"], group_kind))
                    counts[key][tallytext.from_postgres(r["c"], count_kind)] = r["n"]
                    quiet_s[key] = min(quiet_s.get(key, float("inf")), float(r["age_s"]))
                # a group without a vote for a whole TTL stays expired, as it would have
                live = {k: v for k, v in counts.items() if quiet_s[k] < store.ttl_s}
                ttl_s = {k: int(store.ttl_s - quiet_s[k]) for k in live}
                stale = [
                    k.decode() if isinstance(k, bytes) else k
                    async for k in redis.scan_iter(match=keys.tally_pattern(route.name))
                ]
                await store.overwrite(live, [k for k in stale if k not in live], ttl_s)
                rebuilt[route.name] = len(live)
    finally:
        await conn.close()
        await redis.aclose()
    log.info("tallies reconciled", rebuilt=rebuilt)
    return rebuilt


async def redrive(settings: Settings, queue: str) -> int:
    """Moves every message of ``queue``'s DLQ back to ``queue``; returns how many."""
    moved = 0
    async with open_client(settings) as client:
        source = await QueueOps.open(client, settings.dlq_name(queue), 0.002)
        target = await QueueOps.open(client, queue, 0.002)
        while batch := await source.receive(10, 0):
            await asyncio.gather(*(target.send(m.body) for m in batch))
            await asyncio.gather(*(source.delete(m.receipt_handle) for m in batch))
            moved += len(batch)
        await source.close()
        await target.close()
    log.info("dead letters redriven", queue=queue, moved=moved)
    return moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("reconcile", help="rebuild the live tallies from Postgres")
    rd = sub.add_parser("redrive", help="move a DLQ's messages back to its queue")
    rd.add_argument(
        "queue", nargs="?", help="queue name (default: the ingest queue, QF_QUEUE_INGEST)"
    )
    args = parser.parse_args()
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "reconcile":
        asyncio.run(reconcile(settings))
    else:
        asyncio.run(redrive(settings, args.queue or settings.queue_ingest))


if __name__ == "__main__":
    main()
