"""Who is asking: credentials (``X-Api-Key`` or an HS256 bearer JWT) or, for anonymous
clients, the address the first trusted proxy saw.

The identity keys the rate limits and the idempotency records, so it must be one a
client cannot choose: a credential's subject, else an address that no client-written
header can forge (``QF_TRUSTED_PROXY_HOPS``, ``QF_CLIENT_IP_HEADER``).

Auth fails closed: with no credentials configured the api refuses to start unless
``QF_AUTH_DISABLED=true`` says that is intended (``make run``, the compose demo);
configured credentials are enforced whatever ``QF_AUTH_DISABLED`` says.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import jwt
from aiohttp import web

from queuefront.settings import Settings
from queuefront.telemetry import get_logger

log = get_logger(__name__)

CALL = "call"
"""Calling the routes that are not public: a key of ``QF_AUTH_API_KEYS`` or any valid JWT."""
INVALIDATE = "invalidate"
"""The permission of ``POST /api/cache/invalidate``: a key of ``QF_AUTH_INVALIDATE_KEYS``
or a JWT whose ``scope`` holds ``QF_AUTH_JWT_INVALIDATE_SCOPE``."""
EVERYTHING = frozenset({CALL, INVALIDATE})


class AuthError(Exception):
    """No or bad credentials (401)."""


class Forbidden(Exception):
    """Good credentials without the permission the route needs (403)."""


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    """``sub:<subject>``, ``key:<hash>`` or ``ip:<address>``: a rate-limit and
    idempotency scope that the client cannot choose."""
    permissions: frozenset[str] = field(default_factory=frozenset)

    @property
    def anonymous(self) -> bool:
        return self.name.startswith("ip:")


MIN_JWT_SECRET_BYTES = 32
"""RFC 7518 section 3.2: an HS256 key must be at least as long as the hash, 256 bits.
A shorter secret can be found from one token by an offline search."""


def check_configuration(settings: Settings) -> None:
    """At start-up: refuse to run without credentials unless that is explicitly wanted,
    and refuse a JWT secret too short to sign with."""
    secret_bytes = len(settings.auth_jwt_secret.encode())
    if settings.auth_jwt_secret and secret_bytes < MIN_JWT_SECRET_BYTES:
        too_short = (
            f"QF_AUTH_JWT_SECRET is {secret_bytes} bytes: an HS256 secret needs at least "
            f"{MIN_JWT_SECRET_BYTES} (256 bits, RFC 7518 section 3.2); "
            "generate one with `openssl rand -base64 48`"
        )
        log.error("api not started", reason=too_short)
        raise SystemExit(too_short)
    if settings.auth_enabled:
        if settings.auth_disabled:
            log.warning("QF_AUTH_DISABLED is ignored: credentials are configured and enforced")
        return
    if not settings.auth_disabled:
        message = (
            "no credentials configured: set QF_AUTH_API_KEYS and/or QF_AUTH_JWT_SECRET, "
            "or QF_AUTH_DISABLED=true to run without auth (development only)"
        )
        log.error("api not started", reason=message)
        raise SystemExit(message)
    log.warning("auth is off (QF_AUTH_DISABLED=true): every client is anonymous")


ADDRESSES_REMEMBERED = 65_536
"""Parsed client addresses kept (parsing one costs more than serving a cached answer)."""


@lru_cache(maxsize=ADDRESSES_REMEMBERED)
def _ip(value: str, *, with_port: bool) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in ``value``: ``a.b.c.d``, ``a.b.c.d:port``, ``[v6]:port``, a bare
    IPv6 address, or (``with_port``) CloudFront's unbracketed ``v6:port``."""
    value = value.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1 or (with_port and ":" in value):
        value = value.rpartition(":")[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


@lru_cache(maxsize=ADDRESSES_REMEMBERED)
def _address(value: str, *, with_port: bool) -> str | None:
    """The client's identity from an address (see ``_ip``).

    An IPv6 client is identified by its /64: one subscriber usually holds a whole /64, and
    rotating through it must not buy a fresh rate-limit budget per address.
    """
    address = _ip(value, with_port=with_port)
    if address is None:
        return None
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _seen(request: web.Request, settings: Settings) -> Iterator[tuple[str, bool]]:
    """Where the client's address may be read, most trusted first: (value, with_port).

    Each trusted proxy appends the address it received the request from to
    ``X-Forwarded-For``; with ``QF_TRUSTED_PROXY_HOPS=n`` the n-th entry from the right is
    the one the first of them wrote. Entries further left were written by the client and
    are never read. With 0 hops, the TCP peer is the client.
    """
    if settings.client_ip_header:
        yield request.headers.get(settings.client_ip_header, ""), True
    hops = settings.trusted_proxy_hops
    if hops > 0:
        entries = [
            e.strip()
            for header in request.headers.getall("X-Forwarded-For", [])
            for e in header.split(",")
            if e.strip()
        ]
        if entries:
            yield entries[-hops] if len(entries) >= hops else entries[0], False
    yield request.remote or "", False


def client_address(request: web.Request, settings: Settings) -> str:
    """The client's identity: its address as the outermost trusted proxy saw it (an
    IPv6 address as its /64)."""
    for value, with_port in _seen(request, settings):
        seen = _address(value, with_port=with_port)
        if seen is not None:
            return seen
    return request.remote or "unknown"


def client_ip(request: web.Request, settings: Settings) -> str | None:
    """The client's address itself, from the same trusted source as ``client_address``
    (what the backend is told in ``X-Forwarded-For``); None when there is none."""
    for value, with_port in _seen(request, settings):
        seen = _ip(value, with_port=with_port)
        if seen is not None:
            return str(seen)
    return None


def address_identity(request: web.Request, settings: Settings) -> Identity:
    """The anonymous identity of whoever sent ``request``: its address, as the trusted
    proxies saw it (what failed credentials are charged to)."""
    return Identity(f"ip:{client_address(request, settings)}")


def _key_matches(key: str, configured: frozenset[str]) -> bool:
    """Constant-time comparison on bytes: a header may hold any byte, and a str with
    non-ASCII characters makes ``hmac.compare_digest`` raise instead of answer."""
    sent = key.encode("utf-8", "surrogateescape")
    found = False
    for candidate in configured:
        found |= hmac.compare_digest(sent, candidate.encode())
    return found


def _scopes(claims: dict[str, object]) -> set[str]:
    """OAuth's ``scope`` (space-separated) or ``scp`` (a list)."""
    scope, scp = claims.get("scope"), claims.get("scp")
    out = set(scope.split()) if isinstance(scope, str) else set()
    if isinstance(scp, list):
        out.update(s for s in scp if isinstance(s, str))
    return out


def _credentials(request: web.Request, settings: Settings) -> Identity | None:
    """The identity the request's credentials prove; None when it sends none."""
    key = request.headers.get("X-Api-Key")
    if key is not None:
        permissions: set[str] = set()
        if _key_matches(key, settings.api_keys):
            permissions.add(CALL)
        if _key_matches(key, settings.invalidate_keys):
            permissions.add(INVALIDATE)
        if not permissions:
            raise AuthError("invalid API key")
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return Identity("key:" + digest, frozenset(permissions))
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        if header:
            raise AuthError("unsupported Authorization scheme: send Bearer <token>")
        return None
    if not settings.auth_jwt_secret:
        raise AuthError("bearer tokens are not accepted here: send X-Api-Key")
    if not token.isascii():  # a JWT is base64url text; PyJWT would raise on other bytes
        raise AuthError("invalid bearer token: not ASCII")
    required = ["sub", "exp", *(["aud"] if settings.auth_jwt_audience else [])]
    try:
        claims = jwt.decode(
            token.strip(),
            settings.auth_jwt_secret,
            algorithms=["HS256"],
            audience=settings.auth_jwt_audience or None,
            options={"require": required, "verify_aud": bool(settings.auth_jwt_audience)},
        )
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid bearer token: {exc}") from exc
    granted = {CALL}
    if settings.auth_jwt_invalidate_scope in _scopes(claims):
        granted.add(INVALIDATE)
    return Identity(f"sub:{claims['sub']}", frozenset(granted))


def authenticate(request: web.Request, settings: Settings, *, public: bool) -> Identity:
    """The client's identity, or AuthError naming what is wrong with its credentials.

    Public routes take anonymous clients, but credentials sent to them still identify
    the client (and bad ones are still refused).
    """
    if not settings.auth_enabled:
        return Identity(f"ip:{client_address(request, settings)}", EVERYTHING)
    identity = _credentials(request, settings)
    if identity is not None:
        return identity
    if public:
        return address_identity(request, settings)
    raise AuthError("missing credentials: send X-Api-Key or Authorization: Bearer <token>")


def authorize(identity: Identity, permission: str) -> None:
    if permission not in identity.permissions:
        raise Forbidden(f"these credentials do not grant the {permission!r} permission")
