"""Idempotency keys: a retried request gets the first answer, never a second backend call.

A key belongs to one client and one route (the record's name hashes the identity, the
route and the key), and to one request: the record holds a fingerprint of the method,
target and body, and the same key with another request gets ``422`` (the semantics of
Stripe's API and of the IETF Idempotency-Key draft).

A record is in one of three states:

- ``pending``: the first request runs (TTL just past its reply window, so a pod that
  dies mid-request does not lock the key for long); a duplicate meanwhile gets ``409``.
- ``done``: the answer is replayed for ``QF_IDEMPOTENCY_TTL_S`` (``QF_IDEMPOTENCY_ANON_TTL_S``
  for anonymous clients) with ``Idempotent-Replayed: true``.
- ``unknown``: the request was sent (or may have been: SQS did not acknowledge it) but
  no reply came within the window (the api's 504), or its client went away. The backend
  may still be working on it, so a retry must not start it again: the retry gets the
  first request's stored reply (``reply:<id>``) if it has arrived since, and otherwise
  re-submits the SAME request id — the worker never calls the backend for an id that
  already has a reply or a reply in progress. A keyed request's reply is kept as long
  as its key (the envelope's ``keep_s``), so a retry a day later still finds it.

What a record keeps — the rule Stripe states: a result is saved once the endpoint has
begun executing, and nothing is saved for a request refused before (validation, rate
limits, a concurrent request with the same key): those are safe to retry, and a replay
would only repeat a refusal that may no longer hold. The IETF draft leaves the choice
to the server and defines only the key's own errors (400, 409, 422), which are never
stored. The api cannot see inside the backend, so it goes by what each status says:

- kept (``is_answer``): 2xx and 3xx; the 4xx that say "your request, as sent, is
  wrong" (400, 402, 404, 410, 422, …) — the same request would get the same answer, and
  one such as 402 may record an attempt; and the worker's 504 — the backend got the call
  and did not answer in time, so it may have done the work.
- released (the retry runs afresh, under a new request id): the 4xx that say the
  request was not acted on and may succeed unchanged later (``RETRYABLE_4XX``: 401, 403
  and 407 — credentials the client can renew under the same identity; 408, 425, 429 —
  "too early / too many, try again"; 409, 412, 423, 428 — a state that can change);
  the other 5xx (500, 502, 503: the backend failed or could not be reached); and every
  answer the api gives without anything being queued (400, 413, 429, and 503 — a
  refusal, or a send settled by a tombstone: ``service.tombstone``).

Redis growth: every record expires. Anonymous clients (public routes, no credentials)
can create records without limit but pay the shorter TTL, so their records are bounded
by their request rate (the rate limit) times ``QF_IDEMPOTENCY_ANON_TTL_S``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgspec
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from queuefront.envelope import Reply, decode_reply, encode_reply
from queuefront.headers import text_value
from queuefront.keys import Keys
from queuefront.telemetry import get_logger
from service.auth import Identity
from service.errors import ApiError

log = get_logger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_KEY_LENGTH = 255
PENDING_GRACE_S = 5
"""A pending record outlives its request's window by this much."""

PENDING, UNKNOWN, DONE = 0, 1, 2

# KEYS[1]: the record. ARGV: the value it must still have, its new value, TTL (s).
_REPLACE_IF = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


class Record(msgspec.Struct, array_like=True, frozen=True):
    state: int
    request_id: str
    fingerprint: bytes
    reply: bytes = b""


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Record).decode


def request_key(request: web.Request) -> str | None:
    """The request's ``Idempotency-Key`` as text: a value that is not UTF-8 is read as
    ISO-8859-1 (``queuefront.headers.text_value``), one that holds control characters
    is refused with 400 — a key must name the same record every time it is sent."""
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    key = text_value(raw)
    if key is None:
        raise ApiError(400, "bad_request", "Idempotency-Key holds characters that are not allowed")
    return key


def fingerprint(method: str, raw_target: str, body: bytes) -> bytes:
    """What makes two requests the same request: method, encoded target and body."""
    digest = hashlib.sha256()
    for part in (method.encode(), raw_target.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()[:16]


RETRYABLE_4XX = frozenset({401, 403, 407, 408, 409, 412, 423, 425, 428, 429})
"""Client errors that say the request was not acted on and may succeed if sent again
unchanged: never replayed (see the module's docstring)."""


def is_answer(reply: Reply) -> bool:
    """A reply that stands for the key (see the module's docstring), not a failure to retry."""
    if reply.status >= 500:
        return reply.status == 504
    return reply.status not in RETRYABLE_4XX


@dataclass(frozen=True, slots=True)
class Claim:
    name: str
    """The record's Redis key."""
    fingerprint: bytes
    request_id: str
    """The id to run under: this request's, or the first try's when that timed out."""
    ttl_s: int
    replay: Reply | None = None


def _previous(raw: object) -> bytes | None:
    """The old value that ``SET … NX GET`` returned (None: there was none, we set it)."""
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, str):
        return raw.encode()
    return None


class Idempotency:
    def __init__(self, redis: Redis, keys: Keys, ttl_s: int, anon_ttl_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = ttl_s
        self._anon_ttl_s = anon_ttl_s
        self._replace_if = redis.register_script(_REPLACE_IF)

    def record_name(self, route: str, client: Identity, key: str) -> str:
        if not key or len(key) > MAX_KEY_LENGTH:
            raise ApiError(
                400, "bad_request", f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters"
            )
        scope = hashlib.sha256(f"{client.name}\x00{key}".encode(errors="surrogateescape"))
        return self._keys.idempotency(route, scope.hexdigest()[:32])

    def ttl_for(self, client: Identity) -> int:
        return min(self._ttl_s, self._anon_ttl_s) if client.anonymous else self._ttl_s

    async def claim(
        self,
        route: str,
        client: Identity,
        key: str,
        print_: bytes,
        request_id: str,
        window_s: float,
    ) -> Claim:
        """Takes the key for this request, or says what to answer instead (raises 409/422).

        Redis errors propagate: the caller bounds the call (``service.deadlines.bounded``)."""
        name = self.record_name(route, client, key)
        pending_ttl = int(window_s) + PENDING_GRACE_S
        mine = Claim(name, print_, request_id, self.ttl_for(client))
        for _ in range(3):  # more rounds only when the record changes under us
            raw = _previous(
                await self._redis.set(
                    name,
                    _encode(Record(PENDING, request_id, print_)),
                    nx=True,
                    ex=pending_ttl,
                    get=True,
                )
            )
            if raw is None:
                return mine
            try:
                earlier = _decode(raw)
            except msgspec.DecodeError:  # not a record of ours: start over
                await self._redis.delete(name)
                continue
            if earlier.fingerprint != print_:
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request "
                    "(method, path, query or body)",
                )
            if earlier.state == PENDING:
                raise ApiError(
                    409,
                    "conflict",
                    "a request with this Idempotency-Key is still in progress",
                    headers={"Retry-After": "1"},
                )
            if earlier.state == DONE:
                return Claim(
                    name, print_, earlier.request_id, mine.ttl_s, decode_reply(earlier.reply)
                )
            taken = await self._retry_unknown(name, raw, earlier, mine, pending_ttl)
            if taken is not None:
                return taken
        raise ApiError(
            409, "conflict", "this Idempotency-Key is changing; retry", headers={"Retry-After": "1"}
        )

    async def _retry_unknown(
        self, name: str, raw: bytes, earlier: Record, mine: Claim, pending_ttl: int
    ) -> Claim | None:
        """A retry after the first try's 504: its reply, or the same request again."""
        stored = await self._redis.get(self._keys.reply(earlier.request_id))
        run_as = earlier.request_id
        if stored is not None:
            reply = decode_reply(stored if isinstance(stored, bytes) else stored.encode())
            if is_answer(reply):
                done = Record(DONE, earlier.request_id, mine.fingerprint, encode_reply(reply))
                await self._replace_if(keys=[name], args=[raw, _encode(done), mine.ttl_s])
                return Claim(name, mine.fingerprint, earlier.request_id, mine.ttl_s, reply)
            run_as = mine.request_id  # it failed: the retry runs afresh, under its own id
        pending = _encode(Record(PENDING, run_as, mine.fingerprint))
        if await self._replace_if(keys=[name], args=[raw, pending, pending_ttl]):
            if run_as != mine.request_id:
                log.info("idempotent retry re-submits the first try", first_id=run_as)
            return Claim(name, mine.fingerprint, run_as, mine.ttl_s)
        return None

    async def finish(
        self,
        claim: Claim,
        reply: Reply | None,
        failure: BaseException | None,
        *,
        reply_ttl_s: int | None = None,
    ) -> None:
        """Records how the request ended (see the module's docstring for the states).

        ``reply_ttl_s``: the reply came in time, so ``reply:<id>`` and ``claim:<id>``,
        kept for the key's lifetime in case it did not, go back to their usual life (the
        record holds the answer)."""
        pipe = self._redis.pipeline(transaction=False)
        if reply is not None and is_answer(reply):
            done = Record(DONE, claim.request_id, claim.fingerprint, encode_reply(reply))
            pipe.set(claim.name, _encode(done), ex=claim.ttl_s)
        elif reply is not None or (isinstance(failure, ApiError) and failure.status != 504):
            pipe.delete(claim.name)
        else:  # sent, and no answer yet: a retry must not start it again
            unknown = Record(UNKNOWN, claim.request_id, claim.fingerprint)
            pipe.set(claim.name, _encode(unknown), ex=claim.ttl_s)
        if reply is not None and reply_ttl_s is not None:
            pipe.expire(self._keys.reply(claim.request_id), reply_ttl_s)
            pipe.expire(self._keys.claim(claim.request_id), reply_ttl_s)
        try:
            await pipe.execute()
        except RedisError as exc:
            # the pending record expires after the window: the key is free again then
            log.warning("idempotency record not updated", error=str(exc))

    async def bind(self, route: str, client: Identity, key: str, print_: bytes) -> None:
        """Ingest routes: the key stays bound to its first request (422 for another one).

        The stored row itself is what makes an ingest retry idempotent (its id derives
        from the key); this record only remembers which request the key was used for.
        """
        name = self.record_name(route, client, key)
        raw = _previous(
            await self._redis.set(
                name, _encode(Record(DONE, "", print_)), nx=True, ex=self.ttl_for(client), get=True
            )
        )
        if raw is not None and _decode(raw).fingerprint != print_:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request (path or body)",
            )
