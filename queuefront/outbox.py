"""The tally outbox: a batch's tally deltas, committed with its rows, applied to Redis once.

Every statement on ``tally_outbox`` (and on the tally lock that guards it) lives here,
for the two programs that use them: the writer (record in the insert transaction, apply,
sweep what a dead writer left) and ``queuefront.admin reconcile`` (take everything out
under the exclusive lock before it rebuilds the counts from the tables).

Why an outbox: Redis and Postgres cannot commit together. The deltas commit with the
rows, so a writer killed after its commit leaves them here; applying is idempotent (a
marker per batch id, ``queuefront.tally``), so a sweep that races the writer it
thought dead never counts twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import asyncpg
import msgspec

from queuefront import metrics
from queuefront.tally import TALLY_LOCK, Deltas, TallyStore
from queuefront.telemetry import get_logger

log = get_logger(__name__)

Connection: TypeAlias = "asyncpg.Connection | asyncpg.pool.PoolConnectionProxy[Any]"

SWEEP_INTERVAL_S = 10.0
GRACE_S = 30.0
"""Outbox rows older than this were abandoned by a writer; the sweep applies them."""


async def lock_shared(conn: Connection) -> None:
    """Writers, in every insert transaction: many at once, never during a reconcile."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", TALLY_LOCK)


async def lock_exclusive(conn: Connection) -> None:
    """Reconcile: no batch commits (or records deltas) while counts are rebuilt."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", TALLY_LOCK)


async def record(conn: Connection, batch_id: str, deltas: Deltas) -> None:
    """In the batch's insert transaction: its deltas commit with its rows or not at all."""
    await conn.execute(
        "INSERT INTO tally_outbox (batch_id, deltas) VALUES ($1, $2::jsonb)",
        uuid.UUID(batch_id),
        msgspec.json.encode(deltas).decode(),
    )


async def pending(conn: Connection) -> list[tuple[str, Deltas]]:
    """Every batch whose deltas are committed and not yet known to be applied (a group's
    rebuild, under ``lock_exclusive``, so that none is added meanwhile)."""
    rows = await conn.fetch("SELECT batch_id, deltas FROM tally_outbox")
    return [(str(r["batch_id"]), msgspec.json.decode(r["deltas"])) for r in rows]


async def take_all(conn: Connection) -> list[str]:
    """Removes every pending batch (reconcile, under ``lock_exclusive``); returns their ids."""
    rows = await conn.fetch("DELETE FROM tally_outbox RETURNING batch_id")
    return [str(r["batch_id"]) for r in rows]


Revive = Callable[[list[str], Deltas], Awaitable[int]]
"""Rebuilds, from Postgres, the groups whose hashes a batch found missing
(``queuefront.revive``)."""


class TallyOutbox:
    """The writer's side: apply a committed batch's deltas, sweep abandoned ones."""

    def __init__(
        self, pool: asyncpg.Pool, tallies: TallyStore, revive: Revive | None = None
    ) -> None:
        self._pool = pool
        self._tallies = tallies
        self._revive = revive

    async def apply(self, batch_id: str, deltas: Deltas, *, source: str) -> None:
        """Best effort: a failure leaves the outbox row for the sweep."""
        try:
            absent = await self._tallies.apply(batch_id, deltas)
            if absent is not None:
                metrics.TALLY_UPDATES.labels(source).inc()
            async with self._pool.acquire() as conn:
                await conn.execute(
                    "DELETE FROM tally_outbox WHERE batch_id = $1", uuid.UUID(batch_id)
                )
        except Exception as exc:
            log.warning("tally apply deferred to the sweep", batch_id=batch_id, error=str(exc))
            return
        if absent and self._revive is not None:
            try:
                await self._revive(absent, deltas)
            except Exception as exc:
                # the batch is counted; the group's older votes are not, until a reconcile
                log.warning(
                    "expired tally not rebuilt: it counts only the votes since it expired "
                    "until `python -m queuefront.admin reconcile`",
                    keys=absent,
                    error=str(exc),
                )

    async def sweep(self, older_than_s: float = GRACE_S) -> int:
        """Applies tally deltas a dead writer committed but never applied."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT batch_id, deltas FROM tally_outbox"
                " WHERE created_at < now() - make_interval(secs => $1) ORDER BY created_at",
                older_than_s,
            )
        for row in rows:
            deltas: Deltas = msgspec.json.decode(row["deltas"])
            await self.apply(str(row["batch_id"]), deltas, source="sweep")
        return len(rows)

    async def sweep_forever(self) -> None:
        while True:
            try:
                swept = await self.sweep()
                if swept:
                    log.info("outbox swept", batches=swept)
            except Exception as exc:
                log.warning("outbox sweep failed", error=str(exc))
            await asyncio.sleep(SWEEP_INTERVAL_S)
