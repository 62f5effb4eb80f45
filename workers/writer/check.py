"""The sinks of the route table, checked against the database before the first batch.

A table, column or type that does not match would fail every batch the same way, and
only once traffic arrives; checked here, the writer refuses to start with a message
naming the route, the table and what is wrong (a crash loop that says why, instead of
a writer that looks healthy while it stores nothing).
"""

from __future__ import annotations

import asyncpg

from queuefront import sink
from queuefront.routes import RouteTable


class SinkMismatch(Exception):
    """A sink that cannot be stored into as it is declared."""


async def check_sinks(pool: asyncpg.Pool, routes: RouteTable) -> None:
    """EXPLAINs each sink's insert (planned, never run): the table, every column, the
    array types and the ``ON CONFLICT (id)`` unique index must all be there."""
    problems = []
    async with pool.acquire() as conn:
        for route in routes.sinks.values():
            assert route.sink is not None
            empty_columns: list[list[object]] = [[] for _ in range(2 + len(route.sink.fields))]
            try:
                await conn.fetch("EXPLAIN " + sink.insert_sql(route.sink), *empty_columns)
            except asyncpg.PostgresError as exc:
                problems.append(f"route {route.name!r}, table {route.sink.table!r}: {exc}")
        try:
            await conn.fetch("EXPLAIN SELECT batch_id, deltas, created_at FROM tally_outbox")
        except asyncpg.PostgresError as exc:
            problems.append(f"tally_outbox: {exc} (run python -m queuefront.migrate)")
    if problems:
        raise SinkMismatch("; ".join(problems))
