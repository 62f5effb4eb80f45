"""Redis clients.

A ``BlockingConnectionPool``: the default pool raises ``MaxConnectionsError`` past its
limit under a burst, whereas this one makes the extra callers wait for a connection.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import BlockingConnectionPool, Redis

from queuefront.settings import Settings


def open_redis(settings: Settings, *, client_name: str | None = None) -> Redis:
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
        client_name=client_name,
    )
    return Redis(connection_pool=pool)


async def redis_down(redis: Redis) -> list[str]:
    """``["redis"]`` when Redis does not answer a PING within a second (readiness checks)."""
    try:
        await asyncio.wait_for(redis.ping(), 1.0)
    except Exception:
        return ["redis"]
    return []
