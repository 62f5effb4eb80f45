"""Redis clients, with every wait bounded.

A ``BlockingConnectionPool``: the default pool raises ``MaxConnectionsError`` past its
limit under a burst, whereas this one makes the extra callers wait for a connection —
but only for ``POOL_WAIT_S``: a caller that cannot get one fails fast
(``ConnectionError``) and the api answers 503, instead of piling up behind the pool.
Socket reads and connects are bounded too, and a failed command is retried once at
once (a pooled connection may be stale after a Redis restart), never with back-off: the
request's own deadline, not the client library, decides how long anyone waits.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from queuefront.settings import Settings

POOL_WAIT_S = 1.0
"""Longest wait for a free pooled connection."""
SOCKET_TIMEOUT_S = 2.0
"""Longest wait for one reply (a healthy Redis answers in well under a millisecond)."""
CONNECT_TIMEOUT_S = 1.0
RETRIES = 1
PING_TIMEOUT_S = 1.0


def open_redis(
    settings: Settings,
    *,
    client_name: str | None = None,
    socket_timeout_s: float | None = SOCKET_TIMEOUT_S,
) -> Redis:
    """``socket_timeout_s=None`` for a pub/sub connection, whose reads wait for messages."""
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=POOL_WAIT_S,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        health_check_interval=30,
        client_name=client_name,
        retry=Retry(NoBackoff(), RETRIES),
    )
    return Redis(connection_pool=pool)


async def redis_down(redis: Redis) -> list[str]:
    """``["redis"]`` when Redis does not answer a PING within a second (readiness checks)."""
    try:
        await asyncio.wait_for(redis.ping(), PING_TIMEOUT_S)
    except Exception:
        return ["redis"]
    return []
