"""Reviving a live tally that expired: from Postgres, under the tally lock, counted once.

A group's tally hash expires ``QF_TALLY_TTL_S`` after its last vote
(``queuefront.tally``). A new vote then finds no hash, and its increment alone would
show as the group's result — a count that is wrong, where an empty one was only old.
The apply names the hashes that did not exist; for each whose rows in Postgres outnumber
what the batch brought (a new poll's first batch needs nothing: one indexed count says
so), the writer rebuilds it from the table.

Exactly once, like reconcile: the rebuild holds the writers' tally lock exclusively (no
batch commits meanwhile), reads the batches still in the outbox and the group's counts
in one transaction, and one Lua call takes off the increments of the batches whose
marker is not set yet — they add them when they are applied, whenever that is.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from queuefront import outbox, tallytext
from queuefront.keys import Keys
from queuefront.routes import FieldType, Route
from queuefront.sink import quote_ident
from queuefront.tally import Deltas, TallyStore
from queuefront.telemetry import get_logger

log = get_logger(__name__)


class Reviver:
    def __init__(
        self, pool: asyncpg.Pool, store: TallyStore, keys: Keys, routes: Mapping[str, Route]
    ) -> None:
        self._pool = pool
        self._store = store
        self._keys = keys
        self._routes = routes

    async def revive(self, absent: list[str], deltas: Deltas) -> int:
        """Rebuilds the groups of ``absent`` (hashes a batch found missing) that held
        votes before that batch; returns how many it rebuilt."""
        by_route: dict[str, list[tuple[str, str]]] = {}
        for key in absent:
            parsed = self._keys.tally_group(key)
            route = self._routes.get(parsed[0]) if parsed else None
            if parsed is None or route is None or route.tally is None:
                continue
            by_route.setdefault(route.name, []).append((key, parsed[1]))
        revived = 0
        for name, groups in by_route.items():
            route = self._routes[name]
            stored = await self._stored(route, [g for _, g in groups])
            for key, group in groups:
                if stored.get(group, 0) > sum(deltas[key].values()):
                    await self._rebuild(route, key, group)
                    revived += 1
        if revived:
            log.info("expired tallies rebuilt from postgres", groups=revived)
        return revived

    def _names(self, route: Route) -> tuple[str, str, str, FieldType, FieldType]:
        assert route.tally is not None and route.sink is not None
        return (
            quote_ident(route.sink.table),
            quote_ident(route.tally.group),
            quote_ident(route.tally.count),
            route.sink.fields[route.tally.group].type,
            route.sink.fields[route.tally.count].type,
        )

    async def _stored(self, route: Route, groups: list[str]) -> dict[str, int]:
        """Rows per group value in the table (the index on the group column serves it)."""
        table, group, _, kind, _ = self._names(route)
        wanted = {tallytext.to_postgres(g, kind): g for g in groups}
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {group}::text AS g, count(*) AS n FROM {table}"
                f" WHERE {group}::text = ANY($1::text[]) GROUP BY 1",
                list(wanted),
            )
        return {wanted[r["g"]]: int(r["n"]) for r in rows if r["g"] in wanted}

    async def _rebuild(self, route: Route, key: str, group: str) -> None:
        table, group_col, count_col, kind, count_kind = self._names(route)
        async with self._pool.acquire() as conn, conn.transaction():
            await outbox.lock_exclusive(conn)
            pending = await outbox.pending(conn)
            rows = await conn.fetch(
                f"SELECT {count_col}::text AS c, count(*) AS n FROM {table}"
                f" WHERE {group_col}::text = $1 GROUP BY 1",
                tallytext.to_postgres(group, kind),
            )
            counts = {tallytext.from_postgres(r["c"], count_kind): int(r["n"]) for r in rows}
            touching = {batch: d[key] for batch, d in pending if key in d}
            await self._store.rebuild(key, counts, touching)
