"""JSON errors and the per-request context (request id, logging, metrics).

Every response, success or failure, leaves through ``request_context`` so it always
carries ``X-Request-Id`` and is counted once by route and status.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Mapping

import structlog
from aiohttp import web

from queuefront import metrics
from queuefront.telemetry import get_logger

log = get_logger(__name__)

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
PRIORITY: web.RequestKey[str] = web.RequestKey("priority", str)

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


def error_response(request_id: str, err: ApiError) -> web.Response:
    body = {"error": err.code, "message": err.message, "request_id": request_id, **err.extra}
    return web.json_response(body, status=err.status, headers=err.headers)


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> ApiError:
    messages = {
        404: f"no route for {request.method} {request.path}",
        405: f"method {request.method} not allowed on {request.path}",
        413: "request body exceeds the 256 KiB message limit",
    }
    return ApiError(
        exc.status,
        _HTTP_CODES.get(exc.status, "error"),
        messages.get(exc.status, exc.reason),
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    # our own id, always: it keys the reply future, so a client must not be able to collide
    request_id = uuid.uuid4().hex
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
    except Exception:
        log.exception("unhandled error", method=request.method, path=request.path)
        response = error_response(
            request_id, ApiError(500, "internal_error", "unexpected error, see the logs")
        )
    response.headers["X-Request-Id"] = request_id
    route = request.match_info.route.name or "unmatched"
    metrics.HTTP_REQUESTS.labels(route, str(response.status)).inc()
    metrics.HTTP_DURATION.labels(route, request.get(PRIORITY, "none")).observe(
        time.perf_counter() - started
    )
    return response
