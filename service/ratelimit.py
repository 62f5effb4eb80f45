"""Per-client, per-route rate limiting in Redis (GCRA), one EVALSHA per request.

GCRA keeps one timestamp per client instead of a window of counters, needs no cleanup
job (the key expires) and allows a burst of ``burst`` requests; it lives in Redis so
every pod enforces the same limit. It is off (``QF_RATE_LIMIT_RPS=0``) by default,
since API Gateway throttles in production and each Redis round trip costs CPU.
"""

from __future__ import annotations

import math

from redis.asyncio import Redis

# KEYS[1]: the client's key. ARGV: emission interval (ms), burst tolerance (ms).
# Returns 0 when allowed, else the milliseconds to wait.
_GCRA = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now_ms)
if tat < now_ms then tat = now_ms end
local allow_at = tat - tolerance
if now_ms < allow_at then return allow_at - now_ms end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now_ms + 1000))
return 0
"""


class RateLimiter:
    def __init__(self, redis: Redis, rps: float, burst: int) -> None:
        self._script = redis.register_script(_GCRA)
        self._interval_ms = 1000.0 / rps
        self._tolerance_ms = self._interval_ms * (burst - 1)

    async def retry_after_s(self, key: str) -> int:
        """0 when the request may pass, else whole seconds to wait (for Retry-After)."""
        wait_ms = int(await self._script(keys=[key], args=[self._interval_ms, self._tolerance_ms]))
        return 0 if wait_ms <= 0 else max(1, math.ceil(wait_ms / 1000))
