"""Live tallies in Redis, applied exactly once per committed batch.

A batch's deltas are committed to ``tally_outbox`` in the same transaction as its rows
(see ``queuefront.outbox``); applying them here is idempotent — a marker per batch id is
set in the same Lua call that increments — so a writer that dies after committing, or
a sweep that replays an outbox row another writer was about to apply, never counts a
row twice or not at all.

Every key here expires. A tally hash lives ``QF_TALLY_TTL_S`` after its group's last
applied batch: anyone may vote in a poll nobody created, and with Redis set to refuse
writes when full (``noeviction``, which the exactly-once keys need), hashes that never
expire would end in an outage. The counts are durable in Postgres: a vote for a group
whose hash expired rebuilds it from there (``queuefront.revive``), and ``queuefront.admin
reconcile`` rebuilds every group that had a vote within the TTL. A batch marker lives
``MARKER_TTL_S``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from redis.asyncio import Redis

from queuefront import tallytext
from queuefront.item import IngestItem
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
# ARGV[2]: JSON list, per tally hash, of [field, increment] pairs; ARGV[3]: tally TTL.
# Returns {0} when the batch was applied before, else {1, i, ...}: the positions (from
# 1) of the hashes that did not exist (a new group, or one whose hash expired).
_APPLY = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return {0} end
local per_key = cjson.decode(ARGV[2])
local out = {1}
for i, pairs in ipairs(per_key) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then table.insert(out, i) end
  for _, pair in ipairs(pairs) do
    redis.call('HINCRBY', KEYS[i + 1], pair[1], pair[2])
  end
  redis.call('EXPIRE', KEYS[i + 1], ARGV[3])
end
return out
"""

# KEYS[1]: a tally hash; KEYS[2..]: the markers of the batches still in the outbox that
# touch it. ARGV[1]: tally TTL (s); ARGV[2]: JSON {field: count} as Postgres holds it;
# ARGV[3]: JSON list, per such batch, of [field, increment] pairs. A batch not applied
# yet adds its increments later: they are taken off now. Its marker is read in this
# same atomic step, so an apply racing the rebuild is counted exactly once either way.
_REBUILD = """
local counts = cjson.decode(ARGV[2])
local pending = cjson.decode(ARGV[3])
for i, pairs in ipairs(pending) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    for _, pair in ipairs(pairs) do
      counts[pair[1]] = (counts[pair[1]] or 0) - pair[2]
    end
  end
end
redis.call('DEL', KEYS[1])
for field, n in pairs(counts) do
  if n ~= 0 then redis.call('HSET', KEYS[1], field, n) end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""


def deltas_for(route: Route, items: Iterable[IngestItem], keys: Keys) -> Deltas:
    """Increments for the tally of ``route`` from the rows that were actually inserted."""
    assert route.tally is not None
    out: Deltas = defaultdict(lambda: defaultdict(int))
    for item in items:
        key = keys.tally(route.name, tallytext.encode(item.fields[route.tally.group]))
        out[key][tallytext.encode(item.fields[route.tally.count])] += 1
    return {k: dict(v) for k, v in out.items()}


def merge(into: Deltas, more: Deltas) -> None:
    for key, fields in more.items():
        target = into.setdefault(key, {})
        for field, n in fields.items():
            target[field] = target.get(field, 0) + n


class TallyStore:
    def __init__(self, redis: Redis, keys: Keys, ttl_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self.ttl_s = ttl_s
        self._apply = redis.register_script(_APPLY)
        self._rebuild = redis.register_script(_REBUILD)

    async def apply(self, batch_id: str, deltas: Deltas) -> list[str] | None:
        """Applies a batch's deltas unless already applied (None). Returns the tally keys
        that did not exist before: new groups, or groups whose hash had expired."""
        tally_keys = list(deltas)
        pairs = [[[f, n] for f, n in deltas[k].items()] for k in tally_keys]
        done = await self._apply(
            keys=[self._keys.tally_applied(batch_id), *tally_keys],
            args=[MARKER_TTL_S, msgspec.json.encode(pairs), self.ttl_s],
        )
        if not int(done[0]):
            return None
        return [tally_keys[int(i) - 1] for i in done[1:]]

    async def rebuild(
        self, key: str, counts: Mapping[str, int], pending: Mapping[str, Mapping[str, int]]
    ) -> None:
        """Sets ``key`` to ``counts`` (Postgres's), less the increments of the batches in
        ``pending`` (batch id → that batch's increments of ``key``) not applied yet."""
        batch_ids = list(pending)
        await self._rebuild(
            keys=[key, *(self._keys.tally_applied(b) for b in batch_ids)],
            args=[
                self.ttl_s,
                msgspec.json.encode(dict(counts)),
                msgspec.json.encode([[[f, n] for f, n in pending[b].items()] for b in batch_ids]),
            ],
        )

    async def mark_applied(self, batch_id: str) -> None:
        """Reconcile overwrites counts: pending batches must not be applied on top."""
        await self._redis.set(self._keys.tally_applied(batch_id), "1", ex=MARKER_TTL_S)

    async def results(self, route: Route, group_value: str) -> list[tuple[str, int]]:
        raw = await self._redis.hgetall(self._keys.tally(route.name, group_value))
        return [(_text(k), int(v)) for k, v in raw.items()]

    async def overwrite(
        self,
        counts: Mapping[str, Mapping[str, int]],
        stale: list[str],
        ttl_s: Mapping[str, int],
    ) -> None:
        """Replaces tally hashes with ``counts`` (reconcile) in one transaction; each
        expires after its ``ttl_s`` (what is left of the TTL since its last vote)."""
        pipe = self._redis.pipeline(transaction=True)
        if stale:
            pipe.delete(*stale)
        for key, fields in counts.items():
            pipe.delete(key)
            if fields:
                mapping: dict[Any, Any] = dict(fields)
                pipe.hset(key, mapping=mapping)
                pipe.expire(key, max(1, ttl_s.get(key, self.ttl_s)))
        await pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
