"""The messages that cross process boundaries, and their codecs.

Requests travel through SQS, whose bodies must be text: they are JSON, with the HTTP
body kept as text when it is valid UTF-8 (the usual case, and it keeps the whole message size
for JSON bodies) and base64 otherwise. Replies travel through Redis, which takes bytes:
they are msgpack, so a binary body costs nothing extra.

Every message body leaves through ``sqs_safe``: SQS refuses a body holding a character
outside XML's set (``InvalidMessageContents``), and client text — a vote's field, a
header, a path, a body — may hold one. Escaped, not refused: the client's text arrives
exactly as sent, and no message (with up to 50 other clients' votes in it) fails for it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import msgspec

from queuefront import clock
from queuefront.item import IngestItem

Headers = list[tuple[str, str]]

_SQS_ESCAPES = ((b"\xef\xbf\xbe", b"\\ufffe"), (b"\xef\xbf\xbf", b"\\uffff"))
"""U+FFFE and U+FFFF in UTF-8, and their JSON escapes."""


def sqs_safe(encoded: bytes) -> bytes:
    """JSON (as this module's encoder writes it) that SQS takes, meaning the same.

    SQS accepts only ``#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF``. The
    encoder already escapes every control character below U+0020 and refuses lone
    surrogates (``UnicodeEncodeError``: not text), which leaves U+FFFE and U+FFFF: they
    can only stand inside JSON strings, where ``\\uffff`` decodes to the same character.
    UTF-8 is self-synchronising, so these byte sequences are those characters and
    nothing else. Costs one scan when neither is there.
    """
    if b"\xef\xbf" not in encoded:
        return encoded
    for raw, escaped in _SQS_ESCAPES:
        encoded = encoded.replace(raw, escaped)
    return encoded


class CacheSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where the worker stores a shareable reply of a cached route (``queuefront.cache``)."""

    key: str
    field: str
    ttl_s: int
    stale_s: int = 0
    """How long past ``ttl_s`` the entry may still be served while it is refreshed."""
    generation_key: str = ""
    generation: int = 0
    """The serial's generation when the api looked the field up: the store is skipped
    if an invalidation has bumped it since."""
    forwarded: list[str] = []
    """Lower-case names of the request headers the route forwards (and keys on)."""


class RequestEnvelope(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    v: int = 1
    id: str
    route: str
    method: str
    path: str
    """Upstream path with its query string, relative to the backend's base URL."""
    headers: Headers = []
    body: str = ""
    body_b64: bool = False
    reply_to: str
    deadline: float
    """Unix time after which nobody waits for the answer, on the reference clock
    (``queuefront.clock``): the api writes it, a worker on another host reads it."""
    enqueued_at: float
    """Unix time the api queued it, on the reference clock."""
    cache: CacheSpec | None = None
    keep_s: int = 0
    """A request with an idempotency key: how long its reply must be kept (the key's
    lifetime), so a retry after the api's 504 finds it however late (0: the usual
    ``QF_REPLY_TTL_S``)."""

    def body_bytes(self) -> bytes:
        return base64.b64decode(self.body) if self.body_b64 else self.body.encode()

    def seconds_left(self, now: float | None = None) -> float:
        """What is left of the window, judged on the reference clock: neither this
        host's wall clock nor the api's decides."""
        return self.deadline - (clock.now() if now is None else now)


class Reply(msgspec.Struct, frozen=True, kw_only=True, array_like=True, omit_defaults=True):
    id: str
    status: int
    headers: Headers
    body: bytes
    cached: bool = False
    """Set by the worker when it stored this reply in the shared cache."""


class CachedReply(msgspec.Struct, frozen=True, array_like=True):
    """A reply in the cache hash; Redis 7.0 has no per-field TTL, so expiry is checked here."""

    expires_at: float
    """Unix time, on the reference clock (``queuefront.clock``): a worker writes it and
    every pod reads it."""
    reply: Reply
    stale_until: float = 0.0
    """Unix time (reference clock) until which the entry may be served stale while one
    refresh runs."""

    def fresh(self, now: float) -> bool:
        return now < self.expires_at

    def usable_stale(self, now: float) -> bool:
        return self.expires_at <= now < self.stale_until


def pack_body(raw: bytes) -> tuple[str, bool]:
    """Returns (text, is_base64) for an HTTP body that must travel inside JSON."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), True
    return text, False  # U+FFFE/U+FFFF are escaped with the rest of the message (sqs_safe)


_json_encoder = msgspec.json.Encoder()
_request_decoder = msgspec.json.Decoder(RequestEnvelope)
_msgpack_encoder = msgspec.msgpack.Encoder()
_reply_decoder = msgspec.msgpack.Decoder(Reply)
_cached_decoder = msgspec.msgpack.Decoder(CachedReply)


def encode_request(env: RequestEnvelope) -> str:
    """Raises ``UnicodeEncodeError`` for a string that is not text (a lone surrogate)."""
    return sqs_safe(_json_encoder.encode(env)).decode()


def decode_request(body: str | bytes) -> RequestEnvelope:
    return _request_decoder.decode(body)


def encode_reply(reply: Reply) -> bytes:
    return _msgpack_encoder.encode(reply)


def decode_reply(data: bytes) -> Reply:
    return _reply_decoder.decode(data)


def encode_cached(item: CachedReply) -> bytes:
    return _msgpack_encoder.encode(item)


def decode_cached(data: bytes) -> CachedReply:
    return _cached_decoder.decode(data)


class IngestMessage(msgspec.Struct, frozen=True, kw_only=True):
    """Ingest items of one route, packed into one SQS message.

    Packing is what makes the write path cheap: one SendMessageBatch entry, one receive
    slot and one delete carry many items instead of one.
    """

    v: int = 1
    route: str
    items: list[dict[str, Any]]


_ingest_decoder = msgspec.json.Decoder(IngestMessage)


def encode_ingest(message: IngestMessage) -> str:
    return sqs_safe(_json_encoder.encode(message)).decode()


def decode_ingest(body: str | bytes) -> IngestMessage:
    return _ingest_decoder.decode(body)


def encode_ingest_items(route: str, encoded_items: Sequence[bytes]) -> str:
    """``encode_ingest`` of an ``IngestMessage`` whose items are already JSON-encoded:
    the api encodes each item once (for its size) and joins them here, instead of
    decoding nothing and encoding everything again per message."""
    return (_ingest_head(route) + b",".join(encoded_items) + _INGEST_TAIL).decode()


def ingest_overhead_bytes(route: str) -> int:
    """What a message of ``route`` adds to its items (plus a comma between two items)."""
    return len(_ingest_head(route)) + len(_INGEST_TAIL)


_INGEST_TAIL = b"]}"


@lru_cache(maxsize=64)
def _ingest_head(route: str) -> bytes:
    """An empty message of ``route`` as the encoder writes it, without its tail: the
    items come last in ``IngestMessage``, so what precedes them is exactly this."""
    empty = _json_encoder.encode(IngestMessage(route=route, items=[]))
    assert empty.endswith(b"[" + _INGEST_TAIL), empty
    return empty[: -len(_INGEST_TAIL)]


def encode_json(value: Any) -> bytes:
    return _json_encoder.encode(value)


def encode_item(item: IngestItem) -> bytes:
    """An ingest item, encoded once at the api, as it goes into a message (``sqs_safe``)."""
    return sqs_safe(_json_encoder.encode(item.wire()))
