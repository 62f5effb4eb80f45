"""The writer: ``python -m workers.ingest``.

Drains the ingest queue into Postgres in batches: up to ``QF_BATCH_SIZE`` items, or what
has come within ``QF_BATCH_MAX_WAIT_S`` of the first. Per batch: ONE
``INSERT … SELECT * FROM unnest(…) ON CONFLICT (id) DO NOTHING RETURNING id`` per sink
table and one commit; then the tally deltas of the rows RETURNING reported as new;
then the deletes. Read top to bottom: gather → store → settle.

Guarantees, and where they come from:
- a message is deleted only after every item in it is committed (settle);
- a redelivered message or a client's retry stores nothing twice (the item id is the
  primary key) and counts nothing twice (only new rows make deltas);
- a writer killed at any point leaves tallies equal to the table: the deltas commit in
  ``tally_outbox`` with the rows, and are applied once per batch id (``queuefront.tally``);
- Postgres down: the batch stays in hand, visibility extended, retried with jittered
  back-off; nothing is received meanwhile, so no receive count climbs towards the DLQ;
- a row the database rejects is isolated by splitting the batch: the rest commits, and
  its message is retried until SQS moves it to the DLQ after ``maxReceiveCount``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import asyncpg
import msgspec
import uvloop
from redis.asyncio import Redis

from queuefront import metrics, sink
from queuefront.consumer import Held, Poller, VisibilityKeeper, serve, visibility_timeouts
from queuefront.envelope import decode_ingest
from queuefront.keys import Keys
from queuefront.limits import MAX_RECEIVE_MESSAGES
from queuefront.redis import open_redis
from queuefront.routes import Route, RouteTable, load_routes
from queuefront.settings import Settings
from queuefront.sqs import QueueOps, open_client
from queuefront.tally import TALLY_LOCK, Deltas, TallyStore, deltas_for, merge
from queuefront.telemetry import configure_logging, get_logger

log = get_logger(__name__)

Connection: TypeAlias = "asyncpg.Connection | asyncpg.pool.PoolConnectionProxy[Any]"

MAX_RECEIVE_FANOUT = 4
"""ReceiveMessage calls in flight at once while a batch fills."""
EMPTY_POLL_PAUSE_S = 0.1
"""Pause after an empty poll while a batch waits for company (bounded by its max wait)."""
POISON_RETRY_S = 1
"""Visibility given back to a message with an unstorable item: it reaches the DLQ soon."""
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
OUTBOX_SWEEP_S = 10.0
OUTBOX_GRACE_S = 30.0
"""Outbox rows older than this were abandoned by a writer; the sweep applies them."""

ROW_ERRORS = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    ValueError,
    TypeError,
    KeyError,
)
"""Errors that belong to a row (its values), not to the database's availability."""


@dataclass(eq=False)
class Parsed:
    """A received message and its items; ``poison`` when it cannot be read at all."""

    held: Held
    route: Route | None
    items: list[dict[str, Any]] = field(default_factory=list)
    poison: str = ""

    @property
    def count(self) -> int:
        return max(1, len(self.items))


@dataclass
class BatchResult:
    new_rows: int = 0
    duplicates: int = 0
    bad_ids: set[str] = field(default_factory=set)
    deltas: Deltas = field(default_factory=dict)


class Writer:
    def __init__(
        self,
        settings: Settings,
        queue: QueueOps,
        pool: asyncpg.Pool,
        tallies: TallyStore,
        routes: RouteTable,
        keeper: VisibilityKeeper,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._pool = pool
        self._tallies = tallies
        self._sinks = routes.sinks
        self._keeper = keeper
        self._keys = Keys(settings.key_prefix)
        self._poller = Poller(queue, settings.receive_wait_s)
        self._carry: deque[Parsed] = deque()
        self._items_per_message = 1.0
        self._stopping = asyncio.Event()
        self.db_ok = True

    @property
    def last_receive_ok(self) -> float:
        return self._poller.last_ok

    def stop(self) -> None:
        self._stopping.set()

    # --- gather ---------------------------------------------------------------------------

    def _parse(self, held: Held) -> Parsed:
        try:
            message = decode_ingest(held.message.body)
        except msgspec.DecodeError as exc:
            return Parsed(held, None, poison=f"undecodable: {exc}")
        route = self._sinks.get(message.route)
        if route is None:
            return Parsed(held, None, poison=f"no ingest route {message.route!r}")
        metrics.ITEMS_PER_MESSAGE.observe(len(message.items))
        return Parsed(held, route, message.items)

    async def _gather(self) -> list[Parsed]:
        """Up to ``batch_size`` items, or what came within ``batch_max_wait_s``."""
        limit = self._settings.batch_size
        batch: list[Parsed] = []
        items = 0

        def take(parsed: Parsed) -> None:
            nonlocal items
            if batch and items + parsed.count > limit:
                self._carry.append(parsed)  # next batch: a message is never split
            else:
                batch.append(parsed)
                items += parsed.count

        while self._carry and (not batch or items + self._carry[0].count <= limit):
            take(self._carry.popleft())
        if not batch:
            first = await self._poller.receive(MAX_RECEIVE_MESSAGES)
            if not first:
                return []
            self._keeper.track(*first)
            for held in first:
                take(self._parse(held))
        deadline = time.monotonic() + self._settings.batch_max_wait_s
        while items < limit and not self._carry and not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            wanted = (limit - items) / (MAX_RECEIVE_MESSAGES * self._items_per_message)
            fanout = max(1, min(MAX_RECEIVE_FANOUT, math.ceil(wanted)))
            results = await asyncio.gather(
                *(self._queue.receive(MAX_RECEIVE_MESSAGES, 0) for _ in range(fanout)),
                return_exceptions=True,
            )
            received = [Held(self._queue, m) for r in results if isinstance(r, list) for m in r]
            if not received:
                await asyncio.sleep(min(EMPTY_POLL_PAUSE_S, left))
                continue
            self._keeper.track(*received)
            for held in received:
                parsed = self._parse(held)
                self._items_per_message = 0.9 * self._items_per_message + 0.1 * parsed.count
                take(parsed)
        return batch

    # --- store ----------------------------------------------------------------------------

    async def _store(self, batch: list[Parsed]) -> BatchResult:
        """One transaction: every sink table's rows and the batch's tally deltas."""
        result = BatchResult()
        by_route: dict[str, tuple[Route, list[dict[str, Any]]]] = {}
        for parsed in batch:
            if parsed.route is not None:
                by_route.setdefault(parsed.route.name, (parsed.route, []))[1].extend(parsed.items)
        if not by_route:
            return result
        batch_id = str(uuid.uuid4())
        started = time.perf_counter()
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", TALLY_LOCK)
            for route, items in by_route.values():
                assert route.sink is not None
                new_ids, bad = await self._insert_isolating(conn, route, items)
                table = route.sink.table
                new_items = [i for i in items if i["id"] in new_ids]
                duplicates = len(items) - len(bad) - len(new_items)
                metrics.ROWS_INSERTED.labels(table).inc(len(new_items))
                metrics.DUPLICATES_SKIPPED.labels(table).inc(duplicates)
                metrics.POISON_ROWS.labels(table).inc(len(bad))
                result.new_rows += len(new_items)
                result.duplicates += duplicates
                result.bad_ids.update(i.get("id", "") for i in bad)
                if route.tally is not None and new_items:
                    merge(result.deltas, deltas_for(route, new_items, self._keys))
            if result.deltas:
                await conn.execute(
                    "INSERT INTO tally_outbox (batch_id, deltas) VALUES ($1, $2::jsonb)",
                    uuid.UUID(batch_id),
                    msgspec.json.encode(result.deltas).decode(),
                )
        metrics.COMMITS.inc()
        metrics.INSERT_DURATION.observe(time.perf_counter() - started)
        committed_at = time.time()
        for _, items in by_route.values():
            for item in items:
                metrics.INGEST_LAG.observe(max(0.0, committed_at - item.get("received_at", 0)))
        metrics.BATCH_ROWS.observe(sum(len(items) for _, items in by_route.values()))
        if result.deltas:
            await self._apply_tally(batch_id, result.deltas, source="commit")
        return result

    async def _insert_isolating(
        self, conn: Connection, route: Route, items: list[dict[str, Any]]
    ) -> tuple[set[str], list[dict[str, Any]]]:
        """Inserts ``items``; a rejected row is isolated by halving. Returns (new ids, bad)."""
        assert route.sink is not None
        try:
            async with conn.transaction():  # a savepoint: a failure undoes only this try
                rows = await conn.fetch(
                    sink.insert_sql(route.sink), *sink.columns(route.sink, items)
                )
            return {str(r["id"]) for r in rows}, []
        except ROW_ERRORS as exc:
            if len(items) == 1:
                log.warning(
                    "row rejected", table=route.sink.table, item=items[0].get("id"), error=str(exc)
                )
                return set(), items
        mid = len(items) // 2
        new_a, bad_a = await self._insert_isolating(conn, route, items[:mid])
        new_b, bad_b = await self._insert_isolating(conn, route, items[mid:])
        return new_a | new_b, bad_a + bad_b

    async def _apply_tally(self, batch_id: str, deltas: Deltas, *, source: str) -> None:
        """Best effort: a failure leaves the outbox row for the sweep."""
        try:
            if await self._tallies.apply(batch_id, deltas):
                metrics.TALLY_UPDATES.labels(source).inc()
            async with self._pool.acquire() as conn:
                await conn.execute(
                    "DELETE FROM tally_outbox WHERE batch_id = $1", uuid.UUID(batch_id)
                )
        except Exception as exc:
            log.warning("tally apply deferred to the sweep", batch_id=batch_id, error=str(exc))

    async def _store_until_done(self, batch: list[Parsed]) -> BatchResult | None:
        """Retries while Postgres is unavailable; None when stopped before it came back."""
        attempt = 0
        while True:
            try:
                result = await self._store(batch)
                if not self.db_ok:
                    log.info("postgres is back", retries=attempt)
                self.db_ok = True
                return result
            except Exception as exc:
                self.db_ok = False
                delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)] * random.uniform(0.5, 1.5)
                attempt += 1
                metrics.DB_RETRIES.inc()
                log.warning("batch store failed, retrying", error=repr(exc), retry_in_s=delay)
                try:
                    await asyncio.wait_for(self._stopping.wait(), delay)
                    return None
                except TimeoutError:
                    pass

    # --- settle ---------------------------------------------------------------------------

    async def _settle(self, batch: list[Parsed], result: BatchResult) -> None:
        """Deletes every message whose items are all stored; gives the others back."""
        done: list[Held] = []
        failed: list[Held] = []
        for parsed in batch:
            bad = parsed.poison or any(i.get("id") in result.bad_ids for i in parsed.items)
            (failed if bad else done).append(parsed.held)
            if bad:
                final = parsed.held.message.receive_count >= self._settings.max_receive_count
                metrics.POISON_MESSAGES.labels(str(final).lower()).inc()
                log.warning(
                    "message kept for retry or DLQ",
                    poison=parsed.poison or "row",
                    receive_count=parsed.held.message.receive_count,
                    final=final,
                )
        self._keeper.untrack(*done, *failed)
        await asyncio.gather(
            *(h.delete() for h in done), *(h.release(POISON_RETRY_S) for h in failed)
        )

    # --- background -------------------------------------------------------------------------

    async def sweep_outbox(self, older_than_s: float = OUTBOX_GRACE_S) -> int:
        """Applies tally deltas a dead writer committed but never applied."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT batch_id, deltas FROM tally_outbox"
                " WHERE created_at < now() - make_interval(secs => $1) ORDER BY created_at",
                older_than_s,
            )
        for row in rows:
            deltas: Deltas = msgspec.json.decode(row["deltas"])
            await self._apply_tally(str(row["batch_id"]), deltas, source="sweep")
        return len(rows)

    async def _sweep_loop(self) -> None:
        while True:
            try:
                swept = await self.sweep_outbox()
                if swept:
                    log.info("outbox swept", batches=swept)
            except Exception as exc:
                log.warning("outbox sweep failed", error=str(exc))
            await asyncio.sleep(OUTBOX_SWEEP_S)

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        keeper = asyncio.create_task(self._keeper.run(), name="visibility")
        # at start-up, everything in the outbox is a leftover: apply it now
        try:
            await self.sweep_outbox(older_than_s=0)
        except Exception as exc:
            log.warning("start-up outbox sweep failed", error=str(exc))
        sweeper = asyncio.create_task(self._sweep_loop(), name="outbox-sweep")
        log.info("writer started", batch_size=self._settings.batch_size)
        while not self._stopping.is_set():
            batch = await self._gather()
            if not batch:
                continue
            result = await self._store_until_done(batch)
            if result is None:  # stopping while Postgres is down: give the batch back
                self._keeper.untrack(*(p.held for p in batch))
                await asyncio.gather(*(p.held.release() for p in batch))
                break
            await self._settle(batch, result)
            log.debug(
                "batch stored",
                messages=len(batch),
                rows=result.new_rows,
                duplicates=result.duplicates,
                poison=len(result.bad_ids),
            )
        carried = [p.held for p in self._carry]
        self._keeper.untrack(*carried)
        await asyncio.gather(*(h.release() for h in carried))
        for task in (keeper, sweeper):
            task.cancel()
        await asyncio.gather(keeper, sweeper, return_exceptions=True)
        await self._queue.close()
        log.info("writer stopped")


async def main_async(settings: Settings) -> None:
    routes = load_routes(settings.routes_file)
    redis: Redis = open_redis(settings)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    try:
        async with open_client(settings) as client:
            queue = await QueueOps.open(
                client, settings.queue_ingest, settings.send_linger_ms / 1000
            )
            dlq = await QueueOps.open(client, settings.dlq_name(settings.queue_ingest), 0)
            tables = tuple(r.sink.table for r in routes.sinks.values() if r.sink is not None)
            metrics.prime_consumer([queue.name], ("released",), tables)
            keeper = VisibilityKeeper(await visibility_timeouts(queue))
            tallies = TallyStore(redis, Keys(settings.key_prefix))
            writer = Writer(settings, queue, pool, tallies, routes, keeper)
            await serve(
                writer,
                settings=settings,
                redis=redis,
                dlqs=[dlq],
                also_down=lambda: [] if writer.db_ok else ["postgres"],
            )
    finally:
        await pool.close()
        await redis.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    uvloop.run(main_async(settings))


if __name__ == "__main__":
    main()
