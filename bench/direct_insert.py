"""Baseline (a) of the ingest benchmark: the voting seed's v1 write path.

Every vote is validated and stored with its own INSERT and commit before the answer —
no queue, no batching. ``python -m bench.direct_insert`` serves the demo vote route on
``QF_HTTP_PORT`` against ``QF_DATABASE_URL``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from queuefront import sink
from queuefront.routes import load_routes
from queuefront.settings import Settings

POOL: web.AppKey[asyncpg.Pool] = web.AppKey("pool")


def init_app(settings: Settings) -> web.Application:
    route = load_routes(settings.routes_file).get("vote")
    assert route.sink is not None
    table_sink = route.sink
    sql = (
        'INSERT INTO "votes" (id, received_at, poll_id, choice, voter) '
        "VALUES ($1, to_timestamp($2), $3, $4, $5)"
    )

    async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await asyncpg.create_pool(settings.database_url, min_size=8, max_size=8)
        yield
        await app[POOL].close()

    async def vote(request: web.Request) -> web.Response:
        try:
            item = sink.validate(
                table_sink,
                await request.read(),
                request.match_info,
                route="vote",
                item=str(uuid.uuid4()),
                received_at=time.time(),
            )
        except sink.Invalid as exc:
            return web.json_response({"error": "bad_request", "message": str(exc)}, status=400)
        async with request.app[POOL].acquire() as conn:  # autocommit: one commit per row
            await conn.execute(
                sql,
                uuid.UUID(item.id),
                item.received_at,
                item.fields["poll_id"],
                item.fields["choice"],
                item.fields["voter"],
            )
        return web.json_response({"id": item.id, "status": "stored"}, status=201)

    app = web.Application()
    app.cleanup_ctx.append(pool_ctx)
    app.router.add_post(route.path, vote)
    return app


def main() -> None:
    settings = Settings()
    web.run_app(
        init_app(settings), host="127.0.0.1", port=settings.http_port, print=None, access_log=None
    )


if __name__ == "__main__":
    main()
