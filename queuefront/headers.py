"""Which HTTP headers cross the queue, in each direction, and in what form.

Hop-by-hop headers describe one connection, not the message (RFC 9110 §7.6.1), and
credentials authenticate the client to *us*: neither may reach the legacy backend.
Forwarding headers (``X-Forwarded-For``, ``Forwarded``, ``X-Real-IP``…) say who the
client is: a backend believes them, so the client may not write them — the api writes
them from the identity it trusts (``service.forwarding``). Override and rewrite headers
(``X-HTTP-Method-Override``, ``X-Original-URL``…) make many servers act on another
method or path than the request line's, which would let a client reach backend routes
the table does not expose: they pass only on routes that name them (``forward_headers``).

Header values that are not UTF-8. aiohttp decodes every header byte string as UTF-8
with ``surrogateescape``, so a legacy server's ISO-8859-1 value (``café`` sent as the
single byte 0xE9) arrives as a str holding a lone surrogate. Such a str cannot be
encoded — not by msgpack for the reply, not by aiohttp's own writer (its C writer
silently drops the surrogate, its Python writer raises) — and aiohttp offers no way to
write a raw 0xE9 into a response head. So the original bytes are recovered and read
as ISO-8859-1, HTTP's historical header charset (RFC 9110 §5.5): every byte maps to
exactly one character, the text the legacy server meant reaches the client (written
as UTF-8), and no byte is lost (encoding the value as Latin-1 gives the server's bytes
back). A value that would still be refused by the writer (a control character) is
dropped, so emitting the reply can never fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
CREDENTIALS = frozenset({"authorization", "cookie", "x-api-key"})
# recomputed by whoever sends the message on
FRAMING = frozenset({"content-length", "content-encoding", "host"})
FORWARDING = frozenset(
    {
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-server",
        "x-real-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "true-client-ip",
    }
)
"""Who the client is and how it reached us: written by the api, never by the client."""
OVERRIDES = frozenset(
    {
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-url",
        "x-original-uri",
        "x-rewrite-url",
    }
)
"""Headers that change the method or path a server acts on: only where a route names them."""
NEVER_FORWARDED = HOP_BY_HOP | CREDENTIALS | FRAMING | FORWARDING
"""What no route may name for forwarding (the route table refuses it)."""

_REQUEST_DROP = HOP_BY_HOP | CREDENTIALS | FRAMING
_RESPONSE_DROP = HOP_BY_HOP | FRAMING | {"date", "server"}

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""A header name (RFC 9110 §5.1)."""
_UNWRITABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Characters aiohttp refuses to write in a header (header injection): RFC 9110 §5.5."""


def is_token(name: str) -> bool:
    return _TOKEN.fullmatch(name) is not None


def text_value(value: str) -> str | None:
    """``value`` as text any writer can emit: itself when it is valid Unicode, else the
    original bytes read as ISO-8859-1; None when it cannot be written at all."""
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            try:
                value = value.encode("utf-8", "surrogateescape").decode("latin-1")
            except UnicodeEncodeError:  # a surrogate no byte decoded to: not from the wire
                return None
    return None if _UNWRITABLE.search(value) else value


def _keep(headers: Iterable[tuple[str, str]], drop: frozenset[str]) -> list[tuple[str, str]]:
    """The headers not in ``drop`` (nor listed in Connection), each one safe to encode
    and to write; a value that cannot be written is left out."""
    pairs = list(headers)
    # names listed in Connection are hop-by-hop too
    listed = {
        n.strip().lower() for k, v in pairs if k.lower() == "connection" for n in v.split(",")
    }
    out = []
    for name, value in pairs:
        lower = name.lower()
        if lower in drop or lower in listed:
            continue
        text = text_value(value)
        if text is not None and is_token(name):
            # str(): header names may be multidict istr, which codecs do not know
            out.append((str(name), text))
    return out


@lru_cache(maxsize=256)
def _request_drop(named: frozenset[str]) -> frozenset[str]:
    return _REQUEST_DROP | FORWARDING | (OVERRIDES - named)


def request_headers_to_forward(
    headers: Iterable[tuple[str, str]], named: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """The client's headers a proxy route passes on (the api adds the forwarding ones).
    ``named``: the lower-case names the route forwards although they are withheld by
    default (its ``forward_headers``)."""
    return _keep(headers, _request_drop(named))


def named_headers(
    headers: Iterable[tuple[str, str]], named: frozenset[str]
) -> list[tuple[str, str]]:
    """Only the headers named (lower-case ``named``): what a cached route passes on."""
    return _keep(((k, v) for k, v in headers if k.lower() in named), _REQUEST_DROP)


def response_headers_to_return(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The backend's headers the client gets."""
    return _keep(headers, _RESPONSE_DROP)
