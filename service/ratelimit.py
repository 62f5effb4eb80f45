"""Per-client, per-route rate limiting in Redis (GCRA), one EVALSHA per request.

GCRA keeps one timestamp per client instead of a window of counters, needs no cleanup
job (the key expires) and allows a burst of ``burst`` requests; it lives in Redis so
every pod enforces the same limit.

Two budgets, because the two kinds of client differ. Anonymous clients (an address, on
the public routes) are limited by default (``QF_ANON_RATE_LIMIT_RPS``): anyone can send
them, and without a limit one script can fill the queues, the pods' memory and Redis.
Credentialed clients are not, by default (``QF_RATE_LIMIT_RPS=0``): one API key may
serve a whole fleet of kiosks, and API Gateway throttles per route in production.
"""

from __future__ import annotations

import math

from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError

from queuefront.failures import FailureLog
from queuefront.settings import Settings
from queuefront.telemetry import get_logger

log = get_logger(__name__)
FAILURES = FailureLog(log)

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
        """0 when the request may pass, else whole seconds to wait (for Retry-After).

        A Redis that refuses writes (full, under ``noeviction``) lets the request through:
        the limit is a protection, and refusing every anonymous vote for it would turn a
        full Redis into an outage of the write path, which needs no Redis. What does
        need Redis answers for itself (``service.redisfull``). A Redis that does not
        answer at all still fails the request (``service.deadlines.bounded``: 503).
        """
        try:
            wait_ms = int(
                await self._script(keys=[key], args=[self._interval_ms, self._tolerance_ms])
            )
        except OutOfMemoryError as exc:
            FAILURES.note("rate limit not applied: redis out of memory", exc)
            return 0
        return 0 if wait_ms <= 0 else max(1, math.ceil(wait_ms / 1000))


class RateLimits:
    """The budget of each kind of client; ``None`` where that kind is not limited."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.credentialed = (
            RateLimiter(redis, settings.rate_limit_rps, settings.rate_limit_burst)
            if settings.rate_limit_rps > 0
            else None
        )
        self.anonymous = (
            RateLimiter(redis, settings.anon_rate_limit_rps, settings.anon_rate_limit_burst)
            if settings.anon_rate_limit_rps > 0
            else None
        )

    def of(self, *, anonymous: bool) -> RateLimiter | None:
        return self.anonymous if anonymous else self.credentialed
