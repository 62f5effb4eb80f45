"""The request target the backend receives: the route's upstream template, filled with
the client's parameters in their encoded form.

Why not the decoded values aiohttp hands out: decoding is lossy (``a%2Fb`` and ``a/b``,
``%3F`` and ``?`` become one), so sending a decoded value on lets a client inject a
query (``%3F``), cut one (``%23``) or add path segments (``..%2F``) that a backend which
normalises paths resolves outside the route. So each parameter is taken from the raw
request target, exactly as the client encoded it, and re-encoded only where a
character may not appear raw in its place of the template (a path segment, or a query
value, where ``&``, ``=`` and ``+`` mean something). The query string is forwarded raw.

What cannot be forwarded faithfully is refused (``Unforwardable`` → 400 at the api,
before anything is enqueued): control characters (C0, DEL, C1), which no backend
should see in a request line, and dot segments (``.``/``..``, encoded or inside a
parameter around ``/`` or ``\\``), which a normalising backend would resolve.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from functools import lru_cache
from urllib.parse import quote, unquote_to_bytes

from queuefront.routes import Route

UNRESERVED = string.ascii_letters + string.digits + "-._~"
SUB_DELIMS = "!$&'()*+,;="
PATH_SAFE = UNRESERVED + SUB_DELIMS + ":@"
"""Characters a path segment may carry raw (RFC 3986 ``pchar`` without ``%``)."""
QUERY_SAFE = PATH_SAFE + "/?"
"""Characters a query string may carry raw."""
QUERY_VALUE_SAFE = UNRESERVED + "!$'()*,:@/?"
"""A parameter placed in a query value: ``&``, ``=``, ``+`` and ``;`` are encoded."""

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_C1 = re.compile("[\u0080-\u009f]")


class Unforwardable(ValueError):
    """Input the backend cannot be given as the route allows; the message says why."""


def _reencode(raw: str, safe: str) -> str:
    """``raw`` with every valid ``%XX`` kept, a stray ``%`` and every character outside
    ``safe`` percent-encoded (as UTF-8)."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == "%" and _PERCENT.match(raw, i):
            out.append(raw[i : i + 3].upper())
            i += 3
            continue
        out.append(char if char in safe else quote(char, safe=""))
        i += 1
    return "".join(out)


def _check_controls(decoded: bytes, where: str) -> None:
    if any(b < 0x20 or b == 0x7F for b in decoded):
        raise Unforwardable(f"control characters are not allowed in the {where}")
    if _C1.search(decoded.decode("utf-8", errors="ignore")):
        raise Unforwardable(f"control characters are not allowed in the {where}")


def check_path(raw_path: str) -> None:
    """Refuses control characters and dot segments anywhere in the (encoded) path."""
    for segment in raw_path.split("/"):
        decoded = unquote_to_bytes(segment)
        _check_controls(decoded, "path")
        parts = re.split(rb"[/\\]", decoded)
        if any(part in (b".", b"..") for part in parts):
            raise Unforwardable("dot segments ('.', '..', encoded too) are not allowed in paths")


def check_query(raw_query: str) -> None:
    _check_controls(unquote_to_bytes(raw_query.replace("+", " ")), "query string")


@lru_cache(maxsize=1024)
def _raw_matcher(path_template: str) -> re.Pattern[str]:
    """The route's path as a regex over the RAW path: ``{name}`` takes one encoded segment."""
    pattern = ""
    last = 0
    for m in _PARAM.finditer(path_template):
        pattern += re.escape(path_template[last : m.start()]) + f"(?P<{m.group(1)}>[^/]+)"
        last = m.end()
    return re.compile(pattern + re.escape(path_template[last:]))


def raw_params(path_template: str, raw_path: str, decoded: Mapping[str, str]) -> dict[str, str]:
    """Each path parameter as the client encoded it.

    A client that percent-encoded a literal part of the route (``/api/%69tems/…``)
    defeats the raw match; its parameters are then re-encoded from the decoded values.
    """
    m = _raw_matcher(path_template).fullmatch(raw_path)
    if m is not None:
        return m.groupdict()
    return {name: quote(value, safe=PATH_SAFE) for name, value in decoded.items()}


def upstream_template(route: Route) -> str:
    """The route's ``upstream``, or by default its own path without the ``/api`` prefix."""
    if route.upstream is not None:
        return route.upstream
    return route.path.removeprefix("/api") or "/"


TARGETS_REMEMBERED = 4096
"""Targets computed once and reused: a hot cached route is asked for the same few paths
thousands of times a second, and the checks below cost more than the cache hit itself."""


def request_target(route: Route, raw_path: str, raw_query: str, decoded: Mapping[str, str]) -> str:
    """The upstream path and query for this request (relative to the backend's base URL).

    ``raw_path`` and ``raw_query`` are the request's, still percent-encoded; ``decoded``
    are aiohttp's match_info. Raises ``Unforwardable`` (never remembered).
    """
    return _target(
        route.path, upstream_template(route), raw_path, raw_query, tuple(decoded.items())
    )


@lru_cache(maxsize=TARGETS_REMEMBERED)
def _target(
    path_template: str,
    template: str,
    raw_path: str,
    raw_query: str,
    decoded: tuple[tuple[str, str], ...],
) -> str:
    check_path(raw_path)
    check_query(raw_query)
    params = raw_params(path_template, raw_path, dict(decoded))
    path_part, has_query, query_part = template.partition("?")

    def fill(part: str, safe: str) -> str:
        return _PARAM.sub(lambda m: _reencode(params[m.group(1)], safe), part)

    out = fill(path_part, PATH_SAFE)
    query = fill(query_part, QUERY_VALUE_SAFE) if has_query else ""
    if raw_query:
        query = (
            f"{query}&{_reencode(raw_query, QUERY_SAFE)}"
            if query
            else _reencode(raw_query, QUERY_SAFE)
        )
    return f"{out}?{query}" if query or has_query else out


def _chars(safe: str) -> str:
    """A regex for one character of ``safe`` or one ``%XX`` (as ``_reencode`` writes it)."""
    return f"(?:[{re.escape(safe)}]|%[0-9A-F]{{2}})"


_PATH_PARAM = _chars(PATH_SAFE) + "+"
_QUERY_VALUE_PARAM = _chars(QUERY_VALUE_SAFE) + "+"
_RAW_QUERY = _chars(QUERY_SAFE) + "*"


@lru_cache(maxsize=1024)
def target_pattern(template: str) -> re.Pattern[str]:
    """Every target ``request_target`` can build from ``template`` (and no other): the
    worker checks a message's path with it, so a message written by anyone but the api
    reaches no backend path the route table does not expose."""

    def part(text: str, param: str) -> str:
        out, last = "", 0
        for m in _PARAM.finditer(text):
            out += re.escape(text[last : m.start()]) + param
            last = m.end()
        return out + re.escape(text[last:])

    path_part, has_query, query_part = template.partition("?")
    pattern = part(path_part, _PATH_PARAM)
    if not has_query:
        pattern += rf"(?:\?{_RAW_QUERY})?"
    elif query_part:
        pattern += rf"\?{part(query_part, _QUERY_VALUE_PARAM)}(?:&{_RAW_QUERY})?"
    else:
        pattern += rf"\?{_RAW_QUERY}"
    return re.compile(pattern)
