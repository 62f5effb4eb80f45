"""Calls to the legacy backend, turned into replies whatever happens.

Every outcome becomes a reply the api can pass on at once: the backend's own answer
(any status), 504 when it did not answer before the request's deadline, 502 when it
could not be reached. The client never waits out its window because of an error here.
"""

from __future__ import annotations

import time

import aiohttp
import msgspec
import yarl

from queuefront import metrics
from queuefront.envelope import Reply, RequestEnvelope
from queuefront.headers import response_headers_to_return

_JSON = [("Content-Type", "application/json")]


def error_reply(request_id: str, status: int, code: str, message: str) -> Reply:
    body = msgspec.json.encode({"error": code, "message": message, "request_id": request_id})
    return Reply(id=request_id, status=status, headers=list(_JSON), body=body)


class Backend:
    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self._base = base_url.rstrip("/")
        self._session = session

    async def call(self, env: RequestEnvelope) -> Reply:
        started = time.perf_counter()
        url = yarl.URL(self._base + env.path, encoded=True)
        try:
            async with self._session.request(
                env.method,
                url,
                headers=env.headers,
                data=env.body_bytes() or None,
                timeout=aiohttp.ClientTimeout(total=max(env.seconds_left(), 0.001)),
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                reply = Reply(
                    id=env.id,
                    status=resp.status,
                    headers=response_headers_to_return(resp.headers.items()),
                    body=body,
                )
        except TimeoutError:
            reply = error_reply(
                env.id, 504, "timeout", "Request processing timed out (backend too slow)"
            )
        except aiohttp.ClientError as exc:
            reply = error_reply(env.id, 502, "bad_gateway", f"backend unreachable: {exc}")
        metrics.BACKEND_DURATION.labels(env.route, f"{reply.status // 100}xx").observe(
            time.perf_counter() - started
        )
        return reply
