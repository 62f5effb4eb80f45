"""Calls to the legacy backend, turned into replies whatever happens.

Every outcome becomes a reply the api can pass on at once: the backend's own answer
(any status), 504 when it did not answer before the request's deadline, 502 when it
could not be reached or the request could not be sent at all, or when its answer is
larger than the reply path takes (``QF_MAX_REPLY_BYTES``). No exception leaves
``call``: the worker holds an SQS message while it waits here, and an exception would
leave that message without an owner. A 502's body never names the backend's host,
address or port (the client has no business knowing them); the log does.
"""

from __future__ import annotations

import re
import time

import aiohttp
import msgspec
import yarl

from queuefront import metrics
from queuefront.envelope import Reply, RequestEnvelope
from queuefront.failures import FailureLog
from queuefront.headers import response_headers_to_return
from queuefront.telemetry import get_logger

log = get_logger(__name__)
FAILURES = FailureLog(log)

_JSON = [("Content-Type", "application/json")]
MIN_TIMEOUT_S = 0.001
_TARGET = re.compile(r"/[\x21-\x7e]*")
"""An upstream target as it may go on the request line: encoded, printable ASCII, no
spaces. The api builds only such targets; anything else is refused here, unsent,
rather than risk a request line the backend (or a proxy on the way) reads otherwise."""


READ_CHUNK_BYTES = 64 * 1024


class Unforwardable(ValueError):
    """The request cannot be sent as it is (a bad target)."""


class ReplyTooLarge(Exception):
    """The backend's answer is larger than the reply path takes."""


def error_reply(request_id: str, status: int, code: str, message: str) -> Reply:
    body = msgspec.json.encode({"error": code, "message": message, "request_id": request_id})
    return Reply(id=request_id, status=status, headers=list(_JSON), body=body)


class Backend:
    def __init__(self, base_url: str, session: aiohttp.ClientSession, max_reply_bytes: int) -> None:
        self._base = base_url.rstrip("/")
        self._session = session
        self._max_reply_bytes = max_reply_bytes

    async def call(self, env: RequestEnvelope) -> Reply:
        started = time.perf_counter()
        try:
            reply = await self._request(env)
        except ReplyTooLarge:
            FAILURES.note("backend answer too large", route=env.route)
            reply = error_reply(
                env.id,
                502,
                "reply_too_large",
                f"the backend's answer is larger than the {self._max_reply_bytes}-byte reply "
                "limit (QF_MAX_REPLY_BYTES)",
            )
        except TimeoutError:
            reply = error_reply(
                env.id, 504, "timeout", "Request processing timed out (backend too slow)"
            )
        except aiohttp.ClientError as exc:
            FAILURES.note("backend unreachable", exc, route=env.route)
            reply = error_reply(env.id, 502, "bad_gateway", "the backend could not be reached")
        except Exception as exc:  # a request that cannot even be sent (bad URL, headers)
            FAILURES.note("request not forwardable", exc, traceback=True, route=env.route)
            reply = error_reply(
                env.id, 502, "bad_gateway", "the request could not be forwarded to the backend"
            )
        metrics.BACKEND_DURATION.labels(env.route, f"{reply.status // 100}xx").observe(
            time.perf_counter() - started
        )
        return reply

    async def _request(self, env: RequestEnvelope) -> Reply:
        if not _TARGET.fullmatch(env.path):
            raise Unforwardable(f"target is not a printable, encoded path: {env.path!r}")
        url = yarl.URL(self._base + env.path, encoded=True)
        async with self._session.request(
            env.method,
            url,
            headers=env.headers,
            data=env.body_bytes() or None,
            timeout=aiohttp.ClientTimeout(total=max(env.seconds_left(), MIN_TIMEOUT_S)),
            allow_redirects=False,
        ) as resp:
            body = await self._read(resp)
            return Reply(
                id=env.id,
                status=resp.status,
                headers=response_headers_to_return(resp.headers.items()),
                body=body,
            )

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        """The body, read no further than the limit: the reply is held by this worker,
        stored in Redis, pushed through pub/sub and held again by the pod, so one
        oversized answer (or a decompression bomb: the count is of decoded bytes) must
        not take a process's memory or a subscriber's output buffer down with it."""
        limit = self._max_reply_bytes
        if resp.content_length is not None and resp.content_length > limit:
            resp.close()  # drop the connection rather than drain what we will not use
            raise ReplyTooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(READ_CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                resp.close()
                raise ReplyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)
