"""A Redis that refuses writes (out of memory): noticed within a second, answered at once.

Why Redis may fill up: the design needs ``maxmemory-policy noeviction``. Under an LRU
policy the keys evicted first are the ones with a TTL — the exactly-once keys (claims,
idempotency records, tombstones, tally markers) — and an evicted claim is a second
backend call. With ``noeviction`` a full Redis instead refuses every write with an OOM
error, reads still work, and the operator is alarmed on memory.

Why a probe: while Redis refuses writes no worker can claim a request, so a request
queued then would wait its whole window for a 504. The pod writes one small key every
``PROBE_INTERVAL_S``; while that write is refused, the proxy path answers ``503``
naming Redis before it queues anything (cached answers are still served: they are
reads). A request that itself writes (a rate limit, an idempotency record, a cache
lease) gets the same answer from ``service.deadlines.bounded`` at once.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, RedisError

from queuefront import metrics, tasks
from queuefront.failures import FailureLog
from queuefront.telemetry import get_logger

log = get_logger(__name__)
FAILURES = FailureLog(log)

PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 1.0
PROBE_TTL_MS = 5_000
"""The probe key outlives a few probes, and no pod that is gone."""


class WriteProbe:
    """Whether Redis refused the pod's last probe write for want of memory."""

    def __init__(self, redis: Redis, key: str, interval_s: float = PROBE_INTERVAL_S) -> None:
        self._redis = redis
        self._key = key
        self._interval_s = interval_s
        self.full = False
        self._background = tasks.TaskSet("redis write probe")

    def start(self) -> None:
        self._background.spawn(self._run(), name="redis-write-probe")

    async def stop(self) -> None:
        await self._background.stop()

    async def probe(self) -> None:
        """One write. Only an OOM refusal marks Redis full: a Redis that does not answer
        is the business of the calls that need it (they time out into their own 503)."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await self._redis.set(self._key, "1", px=PROBE_TTL_MS)
        except OutOfMemoryError as exc:
            if not self.full:
                log.error("redis is out of memory: it refuses writes, proxied requests get 503")
            FAILURES.note("redis out of memory", exc, what="write probe")
            self._set(True)
            return
        except (RedisError, OSError, TimeoutError):
            return
        if self.full:
            log.info("redis accepts writes again")
        self._set(False)

    def _set(self, full: bool) -> None:
        self.full = full
        metrics.REDIS_REFUSING_WRITES.set(int(full))

    async def _run(self) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(self._interval_s)
