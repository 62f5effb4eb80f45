"""Storing a batch: ONE insert statement per sink table and the tally outbox row, in one
transaction; a row the database rejects is isolated by splitting the batch.

``store_until_done`` retries the whole batch while Postgres is unavailable: the batch
stays in hand (its visibility extended), and nothing new is received meanwhile, so no
receive count climbs towards the DLQ because of an outage.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from queuefront import metrics, outbox, sink
from queuefront.backoff import Backoff
from queuefront.item import ID, IngestItem
from queuefront.keys import Keys
from queuefront.outbox import Connection, TallyOutbox
from queuefront.routes import Route
from queuefront.tally import Deltas, deltas_for, merge
from queuefront.telemetry import get_logger
from workers.writer import observe
from workers.writer.gather import Parsed

log = get_logger(__name__)

STORE_BACKOFF = Backoff(first_s=0.3, cap_s=10.0, jitter="equal")
"""Pause before a failed batch is stored again, doubled per failure in a row. Jittered:
the writers of a deployment all lose Postgres at once and would come back together."""
SCHEMA_ATTEMPTS = 4
"""Tries of a batch that fails with an error that is neither a row's nor an outage's
(1 to 2 s of back-off in all): a dropped table does not come back by waiting."""

ROW_ERRORS = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    ValueError,
    TypeError,
    KeyError,
)
"""Errors that belong to a row (its values), not to the database's availability."""


@dataclass
class BatchResult:
    new_rows: int = 0
    duplicates: int = 0
    bad_ids: set[str] = field(default_factory=set)
    deltas: Deltas = field(default_factory=dict)


class BatchStore:
    def __init__(self, pool: asyncpg.Pool, tallies: TallyOutbox, keys: Keys) -> None:
        self._pool = pool
        self._outbox = tallies
        self._keys = keys
        self.db_ok = True
        self.schema_error = ""

    async def store(self, batch: list[Parsed]) -> BatchResult:
        """One transaction: every sink table's rows and the batch's tally deltas."""
        result = BatchResult()
        by_route: dict[str, tuple[Route, list[IngestItem]]] = {}
        for parsed in batch:
            if parsed.route is not None and parsed.items:
                by_route.setdefault(parsed.route.name, (parsed.route, []))[1].extend(parsed.items)
        if not by_route:
            return result
        batch_id = str(uuid.uuid4())
        started = time.perf_counter()
        async with self._pool.acquire() as conn, conn.transaction():
            await outbox.lock_shared(conn)
            for route, items in by_route.values():
                assert route.sink is not None
                unique, repeats = sink.first_occurrences(items)
                new_ids, bad = await self._insert_isolating(conn, route, unique)
                # only the first occurrence of an id may count: RETURNING names it once
                new_items = [i for i in unique if i.id in new_ids]
                duplicates = repeats + len(unique) - len(bad) - len(new_items)
                observe.table_outcome(
                    route.sink.table,
                    inserted=len(new_items),
                    duplicates=duplicates,
                    rejected=len(bad),
                )
                result.new_rows += len(new_items)
                result.duplicates += duplicates
                result.bad_ids.update(i.id for i in bad)
                if route.tally is not None and new_items:
                    merge(result.deltas, deltas_for(route, new_items, self._keys))
            if result.deltas:
                await outbox.record(conn, batch_id, result.deltas)
        observe.committed(started, (items for _, items in by_route.values()))
        if result.deltas:
            await self._outbox.apply(batch_id, result.deltas, source="commit")
        return result

    async def _insert_isolating(
        self, conn: Connection, route: Route, items: Sequence[IngestItem]
    ) -> tuple[set[str], list[IngestItem]]:
        """Inserts ``items``; a rejected row is isolated by halving. Returns (new ids, bad)."""
        assert route.sink is not None
        try:
            async with conn.transaction():  # a savepoint: a failure undoes only this try
                rows = await conn.fetch(
                    sink.insert_sql(route.sink), *sink.columns(route.sink, items)
                )
            return {str(r[ID]) for r in rows}, []  # RETURNING id
        except ROW_ERRORS as exc:
            if len(items) == 1:
                log.warning(
                    "row rejected", table=route.sink.table, item=items[0].id, error=str(exc)
                )
                return set(), list(items)
        mid = len(items) // 2
        new_a, bad_a = await self._insert_isolating(conn, route, items[:mid])
        new_b, bad_b = await self._insert_isolating(conn, route, items[mid:])
        return new_a | new_b, [*bad_a, *bad_b]

    def down(self) -> list[str]:
        """For readiness: ``postgres`` during an outage, ``postgres-schema`` while batches
        fail for a reason that is neither a row's nor an outage's."""
        if self.schema_error:
            return ["postgres-schema"]
        return [] if self.db_ok else ["postgres"]

    async def store_until_done(
        self, batch: list[Parsed], stopping: asyncio.Event
    ) -> BatchResult | None:
        """Retries while Postgres is unavailable; None when stopped before it came back.

        An error that is no outage (a missing table or column, a privilege) would fail
        the same way forever: it gets ``SCHEMA_ATTEMPTS`` tries, then ``Unstorable``, and
        the caller gives the batch back to SQS, where its messages reach the DLQ.
        """
        attempt = 0
        while True:
            try:
                result = await self.store(batch)
                if not self.db_ok or self.schema_error:
                    log.info("postgres is back", retries=attempt)
                self.db_ok = True
                self.schema_error = ""
                return result
            except Exception as exc:
                if credentials_refused(exc):
                    # rotated password (the RDS-managed secret): waiting will not bring
                    # the old one back, and a new task reads the current one at start
                    raise CredentialsRefused(exc) from exc
                outage = is_outage(exc)
                attempt += 1
                metrics.DB_RETRIES.inc()
                if outage:
                    self.db_ok = False
                elif attempt >= SCHEMA_ATTEMPTS:
                    self.schema_error = repr(exc)
                    raise Unstorable(exc) from exc
                delay = STORE_BACKOFF(attempt)
                log.warning(
                    "batch store failed, retrying",
                    error=repr(exc),
                    outage=outage,
                    attempt=attempt,
                    retry_in_s=delay,
                )
                try:
                    await asyncio.wait_for(stopping.wait(), delay)
                    return None
                except TimeoutError:
                    pass


class Unstorable(Exception):
    """A batch failed ``SCHEMA_ATTEMPTS`` times with an error that is no outage's."""


class CredentialsRefused(Exception):
    """Postgres refused the writer's credentials on a new connection: the password was
    rotated (or the role locked). The writer gives its batch back and exits, so that ECS
    starts a task that reads the current secret (PGPASSWORD) — nothing goes to the DLQ."""


def credentials_refused(exc: BaseException) -> bool:
    """SQLSTATE class 28 (invalid authorization: a wrong password, a role that may not
    log in)."""
    return isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError)


OUTAGE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
"""Connection exception, transaction rollback (serialization, deadlock), insufficient
resources, operator intervention (shutdown, cancel), system error: they pass."""
OUTAGE_SQLSTATES = frozenset({"55P03"})  # lock not available


def is_outage(exc: BaseException) -> bool:
    """True for errors that pass with time (Postgres away, busy or restarting)."""
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return state[:2] in OUTAGE_SQLSTATE_CLASSES or state in OUTAGE_SQLSTATES
    return False
