"""JSON errors and the per-request context (request id, logging, metrics).

Every response, success or failure, leaves through ``request_context`` so it always
carries ``X-Request-Id`` and is counted once by route and status.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping

import structlog
from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError
from redis.exceptions import OutOfMemoryError, RedisError

from queuefront import metrics
from queuefront.failures import FailureLog
from queuefront.telemetry import get_logger

log = get_logger(__name__)
FAILURES = FailureLog(log)

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
PRIORITY: web.RequestKey[str] = web.RequestKey("priority", str)

RETRY_AFTER_S = "1"
"""``Retry-After`` of a 503 for a dependency that did not take the request."""

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}


class ApiError(Exception):
    """An error answered as ``{"error", "message", "request_id"}`` with its status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    RedisError,
    OSError,
    TimeoutError,
    BotoCoreError,
    ClientError,
)
"""Failures of Redis or SQS (slow, down, out of connections): answered with 503."""


def unavailable(dependency: str, what: str) -> ApiError:
    return ApiError(
        503,
        "unavailable",
        f"{dependency} did not answer in time ({what}); retry later",
        headers={"Retry-After": RETRY_AFTER_S},
        extra={"dependency": dependency},
    )


def redis_full(what: str) -> ApiError:
    """Redis answered, refusing a write: it is at ``maxmemory`` (and, as the design needs,
    evicts nothing). Said as such, so the operator looks at its memory, not its network."""
    return ApiError(
        503,
        "unavailable",
        f"redis is out of memory and refuses writes ({what}); retry later",
        headers={"Retry-After": RETRY_AFTER_S},
        extra={"dependency": "redis"},
    )


def error_response(request_id: str, err: ApiError) -> web.Response:
    body = {"error": err.code, "message": err.message, "request_id": request_id, **err.extra}
    return web.json_response(body, status=err.status, headers=err.headers)


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> ApiError:
    messages = {
        404: f"no route for {request.method} {request.path}",
        405: f"method {request.method} not allowed on {request.path}",
        # aiohttp's text names the limit (QF_MAX_MESSAGE_BYTES)
        413: f"request body too large for one queue message: {exc.text}",
    }
    return ApiError(
        exc.status,
        _HTTP_CODES.get(exc.status, "error"),
        messages.get(exc.status, exc.reason),
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _ids() -> Iterator[str]:
    """Request ids: 32 hex digits, a random per-process half and a counter. Unique across
    pods and restarts like a uuid4, without a system call per request (uuid4 was 5 % of
    a cached hit's CPU)."""
    prefix = os.urandom(8).hex()
    for n in itertools.count():
        yield f"{prefix}{n:016x}"


_request_ids = _ids()


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    # our own id, always: it keys the reply future, so a client must not be able to collide
    request_id = next(_request_ids)
    request[REQUEST_ID] = request_id
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ApiError as err:
        response = error_response(request_id, err)
    except web.HTTPException as exc:
        response = error_response(request_id, _from_http_exception(request, exc))
    except DEPENDENCY_ERRORS as exc:
        # a dependency failure that no handler mapped: still a 503, never a 500
        FAILURES.note("dependency failed", exc, route=request.match_info.route.name)
        mapped = (
            redis_full(request.match_info.route.name or request.path)
            if isinstance(exc, OutOfMemoryError)
            else unavailable("a dependency", type(exc).__name__)
        )
        response = error_response(request_id, mapped)
    except Exception as exc:
        FAILURES.note("unhandled error", exc, traceback=True, path=request.path)
        response = error_response(
            request_id, ApiError(500, "internal_error", "unexpected error, see the logs")
        )
    response.headers["X-Request-Id"] = request_id
    route = request.match_info.route.name or "unmatched"
    metrics.child(metrics.HTTP_REQUESTS, route, str(response.status)).inc()
    metrics.child(metrics.HTTP_DURATION, route, request.get(PRIORITY, "none")).observe(
        time.perf_counter() - started
    )
    return response
