"""Live tallies in Redis, applied exactly once per committed batch.

A batch's deltas are committed to ``tally_outbox`` in the same transaction as its rows
(see ``queuefront.outbox``); applying them here is idempotent — a marker per batch id is
set in the same Lua call that increments — so a writer that dies after committing, or
a sweep that replays an outbox row another writer was about to apply, never counts a
row twice or not at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from redis.asyncio import Redis

from queuefront.keys import Keys
from queuefront.routes import Route

TALLY_LOCK = 0x71746C79
"""Postgres advisory lock: writers hold it shared in every insert transaction, reconcile
holds it exclusively, so no batch commits while the tallies are being rebuilt."""

MARKER_TTL_S = 3600
"""How long an applied batch id is remembered; outbox rows are swept within a minute."""

Deltas = dict[str, dict[str, int]]
"""tally key → counted value → increment."""

# KEYS[1]: the batch marker; KEYS[2..]: tally hashes. ARGV[1]: marker TTL;
# ARGV[2]: JSON list, per tally hash, of [field, increment] pairs.
_APPLY = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local per_key = cjson.decode(ARGV[2])
for i, pairs in ipairs(per_key) do
  for _, pair in ipairs(pairs) do
    redis.call('HINCRBY', KEYS[i + 1], pair[1], pair[2])
  end
end
return 1
"""


def deltas_for(route: Route, items: Iterable[Mapping[str, Any]], keys: Keys) -> Deltas:
    """Increments for the tally of ``route`` from the rows that were actually inserted."""
    assert route.tally is not None
    out: Deltas = defaultdict(lambda: defaultdict(int))
    for item in items:
        key = keys.tally(route.name, str(item[route.tally.group]))
        out[key][str(item[route.tally.count])] += 1
    return {k: dict(v) for k, v in out.items()}


def merge(into: Deltas, more: Deltas) -> None:
    for key, fields in more.items():
        target = into.setdefault(key, {})
        for field, n in fields.items():
            target[field] = target.get(field, 0) + n


class TallyStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._apply = redis.register_script(_APPLY)

    async def apply(self, batch_id: str, deltas: Deltas) -> bool:
        """Applies a batch's deltas unless already applied; True when applied now."""
        tally_keys = list(deltas)
        pairs = [[[f, n] for f, n in deltas[k].items()] for k in tally_keys]
        done = await self._apply(
            keys=[self._keys.tally_applied(batch_id), *tally_keys],
            args=[MARKER_TTL_S, msgspec.json.encode(pairs)],
        )
        return bool(done)

    async def mark_applied(self, batch_id: str) -> None:
        """Reconcile overwrites counts: pending batches must not be applied on top."""
        await self._redis.set(self._keys.tally_applied(batch_id), "1", ex=MARKER_TTL_S)

    async def results(self, route: Route, group_value: str) -> list[tuple[str, int]]:
        raw = await self._redis.hgetall(self._keys.tally(route.name, group_value))
        return [(_text(k), int(v)) for k, v in raw.items()]

    async def overwrite(self, counts: Mapping[str, Mapping[str, int]], stale: list[str]) -> None:
        """Replaces tally hashes with ``counts`` (reconcile) in one transaction."""
        pipe = self._redis.pipeline(transaction=True)
        if stale:
            pipe.delete(*stale)
        for key, fields in counts.items():
            pipe.delete(key)
            if fields:
                mapping: dict[Any, Any] = dict(fields)
                pipe.hset(key, mapping=mapping)
        await pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
