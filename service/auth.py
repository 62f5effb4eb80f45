"""Credentials: API keys (``X-Api-Key``) or HS256 bearer JWTs (``Authorization``).

Returns a stable client identity for the rate limiter. With neither keys nor a JWT
secret configured, auth is off and the client is identified by its address — the
right default for ``make run``, and logged loudly at start-up.
"""

from __future__ import annotations

import hashlib
import hmac

import jwt
from aiohttp import web

from queuefront.settings import Settings


class AuthError(Exception):
    pass


def client_address(request: web.Request) -> str:
    forwarded = request.headers.get("X-Forwarded-For", "")
    return forwarded.split(",")[0].strip() or (request.remote or "unknown")


def authenticate(request: web.Request, settings: Settings, *, public: bool) -> str:
    """The client identity, or AuthError naming what is wrong with the credentials."""
    if public or not settings.auth_enabled:
        return f"ip:{client_address(request)}"
    key = request.headers.get("X-Api-Key")
    if key is not None:
        if settings.api_keys and any(hmac.compare_digest(key, k) for k in settings.api_keys):
            return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
        raise AuthError("invalid API key")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token and settings.auth_jwt_secret:
        try:
            claims = jwt.decode(
                token,
                settings.auth_jwt_secret,
                algorithms=["HS256"],
                audience=settings.auth_jwt_audience or None,
                options={"require": ["sub"], "verify_aud": bool(settings.auth_jwt_audience)},
            )
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid bearer token: {exc}") from exc
        return f"sub:{claims['sub']}"
    raise AuthError("missing credentials: send X-Api-Key or Authorization: Bearer <token>")
