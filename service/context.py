"""Typed application keys: everything a handler needs, created by ``init_app``'s contexts."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from queuefront.keys import Keys
from queuefront.routes import RouteTable
from queuefront.settings import Settings
from queuefront.sqs import QueueOps
from queuefront.tally import TallyStore
from service.admission import BacklogMonitor
from service.bodies import Budget
from service.hotcache import HotCache
from service.idempotency import Idempotency
from service.packer import Packer
from service.ratelimit import RateLimits
from service.redisfull import WriteProbe
from service.replies import ReplyWaiter

SETTINGS = web.AppKey("settings", Settings)
ROUTES = web.AppKey("routes", RouteTable)
KEYS = web.AppKey("keys", Keys)
POD_ID = web.AppKey("pod_id", str)
REDIS = web.AppKey("redis", Redis)
QUEUES = web.AppKey("queues", dict[str, QueueOps])
"""By priority: ``high`` and ``normal``."""
WAITER = web.AppKey("waiter", ReplyWaiter)
MONITOR = web.AppKey("monitor", BacklogMonitor)
LIMITER = web.AppKey("limiter", RateLimits)
TALLIES = web.AppKey("tallies", TallyStore)
HOTCACHE = web.AppKey("hotcache", HotCache)
IDEMPOTENCY = web.AppKey("idempotency", Idempotency)
WRITE_PROBE = web.AppKey("write_probe", WriteProbe)
"""Whether Redis refuses writes (out of memory)."""
BODY_BUDGET = web.AppKey("body_budget", Budget)
"""Request body bytes this process holds (``QF_MAX_PENDING_BYTES``)."""
PACKERS: web.AppKey[dict[str, Packer]] = web.AppKey("packers")
"""By ingest route name."""
