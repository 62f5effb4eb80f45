"""Idempotency keys on proxy routes: a retried POST gets the first answer again.

The first request with a key claims it (SET NX, with a TTL just past its reply window,
so a pod that dies mid-request does not lock the key for a day); its reply replaces the
claim for ``QF_IDEMPOTENCY_TTL_S``. A duplicate that arrives meanwhile gets 409; one
that arrives later gets the stored reply, without a second backend call. Failures (5xx,
timeouts) release the key so that the client's retry can run.
"""

from __future__ import annotations

from redis.asyncio import Redis

from queuefront.envelope import Reply, decode_reply, encode_reply
from queuefront.keys import Keys
from service.errors import ApiError

PENDING = b"\x00pending"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_KEY_LENGTH = 255


class Idempotency:
    def __init__(self, redis: Redis, keys: Keys, ttl_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = ttl_s

    async def claim(self, route: str, key: str, window_s: float) -> Reply | None:
        """None: this request owns the key and must run. A Reply: answer it again."""
        if len(key) > MAX_KEY_LENGTH:
            raise ApiError(400, "bad_request", f"Idempotency-Key longer than {MAX_KEY_LENGTH}")
        name = self._keys.idempotency(route, key)
        for _ in range(2):  # the second round covers a claim that expired in between
            if await self._redis.set(name, PENDING, nx=True, ex=int(window_s) + 5):
                return None
            stored = await self._redis.get(name)
            if stored is None:
                continue
            if isinstance(stored, str):
                stored = stored.encode()
            if stored == PENDING:
                raise ApiError(
                    409,
                    "conflict",
                    "a request with this Idempotency-Key is still in progress",
                    headers={"Retry-After": "1"},
                )
            return decode_reply(stored)
        return None

    async def finish(self, route: str, key: str, reply: Reply | None) -> None:
        name = self._keys.idempotency(route, key)
        if reply is None or reply.status >= 500:
            await self._redis.delete(name)
        else:
            await self._redis.set(name, encode_reply(reply), ex=self._ttl_s)
