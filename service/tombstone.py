"""Settling a request the api gave up sending: a tombstone, or the worker already has it.

When a send fails or its acknowledgement does not come in time, SQS may still have the
message (an answer lost is not a message lost), and a worker may receive it at any
moment. The api then settles the request in ONE atomic step (a Lua script), against the
keys the worker's claim uses (``workers.priority.handback``: ``SET claim:<id> NX``, then ``GET
reply:<id>``, in that order):

- ``reply:<id>`` exists: the request is answered (``replied``, with that reply);
- ``claim:<id>`` exists: a worker has taken it and calls the backend (``claimed``): the
  api waits for the reply like for any other request;
- neither: a tombstone (a 503 reply) is stored under ``reply:<id>`` (``tombstoned``).
  A worker that receives the message later finds the reply and never calls the
  backend, so the api may answer 503 and release the request's idempotency key.

Why a script: a plain ``SET reply:<id> NX`` could land between a worker's claim and its
read of ``reply:<id>`` — the api would answer 503 while the worker calls the backend,
and a retry would run the request a second time. The script reads the claim and writes
the tombstone with nothing in between, and the worker sets its claim before it reads
the reply, so every interleaving ends in exactly one of the three outcomes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal
from weakref import WeakKeyDictionary

from redis.asyncio import Redis

from queuefront.envelope import Reply, decode_reply, encode_reply
from queuefront.keys import Keys

TOMBSTONE_GRACE_S = 60
"""A tombstone outlives the request's deadline by at least this much (like a worker's
claim): a message that SQS delivers late is dropped as expired after that."""

# KEYS[1]: reply:<id>, KEYS[2]: claim:<id>. ARGV: the tombstone, its TTL (s).
_SETTLE = """
local stored = redis.call('GET', KEYS[1])
if stored then return {'replied', stored} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'claimed'} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return {'tombstoned'}
"""

_SCRIPTS: WeakKeyDictionary[Redis, Any] = WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class Settled:
    outcome: Literal["replied", "claimed", "tombstoned"]
    reply: Reply | None = None
    """The stored reply, when ``replied``."""


def tombstone(request_id: str) -> Reply:
    return Reply(id=request_id, status=503, headers=[], body=b"")


def is_tombstone(reply: Reply) -> bool:
    """No backend answers a bare 503 without a header: this is a settled request."""
    return reply.status == 503 and not reply.body and not reply.headers


def _script(redis: Redis) -> Any:
    script = _SCRIPTS.get(redis)
    if script is None:
        script = _SCRIPTS[redis] = redis.register_script(_SETTLE)
    return script


async def settle(
    redis: Redis, keys: Keys, request_id: str, *, reply_ttl_s: int, seconds_left: float
) -> Settled:
    """Settles ``request_id`` (see the module's docstring); Redis errors propagate."""
    ttl_s = max(reply_ttl_s, math.ceil(max(0.0, seconds_left)) + TOMBSTONE_GRACE_S)
    result = await _script(redis)(
        keys=[keys.reply(request_id), keys.claim(request_id)],
        args=[encode_reply(tombstone(request_id)), ttl_s],
    )
    outcome = result[0].decode() if isinstance(result[0], bytes) else str(result[0])
    if outcome == "replied":
        raw = result[1]
        reply = decode_reply(raw if isinstance(raw, bytes) else raw.encode())
        return Settled("tombstoned") if is_tombstone(reply) else Settled("replied", reply)
    if outcome == "claimed":
        return Settled("claimed")
    return Settled("tombstoned")
