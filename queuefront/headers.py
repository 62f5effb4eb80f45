"""Which HTTP headers cross the queue, in each direction, and in what form.

Hop-by-hop headers describe one connection, not the message (RFC 9110 §7.6.1), and
credentials authenticate the client to *us*: neither may reach the legacy backend.

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

_REQUEST_DROP = HOP_BY_HOP | CREDENTIALS | FRAMING
_RESPONSE_DROP = HOP_BY_HOP | FRAMING | {"date", "server"}


def _keep(headers: Iterable[tuple[str, str]], drop: frozenset[str]) -> list[tuple[str, str]]:
    pairs = list(headers)
    # names listed in Connection are hop-by-hop too
    listed = {
        n.strip().lower() for k, v in pairs if k.lower() == "connection" for n in v.split(",")
    }
    # str(): header names may be multidict istr, which codecs do not know
    return [(str(k), v) for k, v in pairs if k.lower() not in drop and k.lower() not in listed]


def request_headers_to_forward(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return _keep(headers, _REQUEST_DROP)


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""A header name (RFC 9110 §5.1)."""
_UNWRITABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Characters aiohttp refuses to write in a header (header injection): RFC 9110 §5.5."""


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


def response_headers_to_return(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The backend's headers the client gets, each one safe to encode and to write."""
    out = []
    for name, value in _keep(headers, _RESPONSE_DROP):
        text = text_value(value)
        if text is not None and _TOKEN.fullmatch(name):
            out.append((name, text))
    return out
