"""Which HTTP headers cross the queue, in each direction.

Hop-by-hop headers describe one connection, not the message (RFC 9110 §7.6.1), and
credentials authenticate the client to *us*: neither may reach the legacy backend.
"""

from __future__ import annotations

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


def response_headers_to_return(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return _keep(headers, _RESPONSE_DROP)
