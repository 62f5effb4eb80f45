"""What the backend is told about the client: forwarding headers the api writes itself.

A backend believes ``X-Forwarded-For`` (its logs, its own access rules, its fraud
checks), so a value the client wrote must never reach it: every client-written
forwarding header is dropped (``queuefront.headers.FORWARDING``) and the api writes
``X-Forwarded-For``, ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` from what it trusts —
the same source as the identity that keys rate limits (``service.auth.client_ip``:
``QF_CLIENT_IP_HEADER``, ``QF_TRUSTED_PROXY_HOPS``, else the TCP peer).

Proto and host: with trusted proxies in front (``QF_TRUSTED_PROXY_HOPS`` > 0), the
nearest one's ``X-Forwarded-Proto``/``-Host`` (the last entry: proxies append, or
overwrite) says how the client reached the edge; without, the api's own view (its
scheme, the ``Host`` the client sent). A value that is not a plain scheme or host is
left out rather than passed on.

Cached routes get none of this: their answer is shared by everyone who sends the same
key, so it may not depend on who asked first; they forward exactly the headers they
name (``queuefront.headers.named_headers``).
"""

from __future__ import annotations

import re

from aiohttp import web

from queuefront.headers import request_headers_to_forward
from queuefront.routes import Route
from queuefront.settings import Settings
from service.auth import client_ip

_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.?)+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?"
)
"""A DNS name or address, with an optional port: nothing a backend could misread."""
_PROTOS = frozenset({"http", "https"})


def _nearest(request: web.Request, name: str) -> str:
    """The last entry of a comma-separated header: the nearest proxy's."""
    values = request.headers.getall(name, [])
    return values[-1].rpartition(",")[2].strip() if values else ""


def forwarding_headers(request: web.Request, settings: Settings) -> list[tuple[str, str]]:
    """``X-Forwarded-For``/``-Proto``/``-Host`` as the api trusts them."""
    trusted_proxies = settings.trusted_proxy_hops > 0
    out = []
    address = client_ip(request, settings)
    if address is not None:
        out.append(("X-Forwarded-For", address))
    proto = _nearest(request, "X-Forwarded-Proto").lower() if trusted_proxies else ""
    proto = proto if proto in _PROTOS else request.scheme
    out.append(("X-Forwarded-Proto", proto))
    host = _nearest(request, "X-Forwarded-Host") if trusted_proxies else ""
    host = host or request.headers.get("Host", "")
    if _HOST.fullmatch(host):
        out.append(("X-Forwarded-Host", host))
    return out


def backend_headers(
    request: web.Request, route: Route, settings: Settings
) -> list[tuple[str, str]]:
    """The headers a (not cached) proxy route sends the backend: the client's, less
    what only the api may write or the route does not name, plus the forwarding ones."""
    kept = request_headers_to_forward(request.headers.items(), route.named_forwards)
    return kept + forwarding_headers(request, settings)
