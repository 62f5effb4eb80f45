"""The write path at the api: validate, pack, enqueue, 202 — and tally reads.

Packing: items of one route that arrive within the send linger share one SQS message
(up to ``QF_INGEST_PACK_MAX`` items and 256 KiB). Each item's 202 still waits until SQS
has accepted the message that carries it, so an acknowledged item is never only in
memory. The writer deletes a message only once every item in it is committed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from queuefront import metrics, sink
from queuefront.batcher import Batcher
from queuefront.envelope import IngestMessage, encode_ingest, encode_json
from queuefront.limits import MAX_MESSAGE_BYTES
from queuefront.routes import Route
from queuefront.sqs import QueueOps
from queuefront.telemetry import get_logger
from service.context import PACKERS, ROUTES, TALLIES
from service.errors import ApiError
from service.proxy import RETRY_AFTER_S, check_access

log = get_logger(__name__)

ENVELOPE_ALLOWANCE_BYTES = 1024
"""Room kept in a packed message for its JSON wrapping."""


class Packer:
    """Packs one ingest route's items into SQS messages; ``submit`` returns the message id."""

    def __init__(self, route: str, queue: QueueOps, *, max_items: int, linger_s: float) -> None:
        self._route = route
        self._queue = queue
        self._batcher: Batcher[dict[str, Any], str] = Batcher(
            self._send,
            linger_s=linger_s,
            max_entries=max_items,
            max_bytes=MAX_MESSAGE_BYTES - ENVELOPE_ALLOWANCE_BYTES,
            size_of=lambda item: len(encode_json(item)) + 1,
        )

    async def submit(self, item: dict[str, Any]) -> str:
        return await self._batcher.submit(item)

    async def _send(self, items: Sequence[dict[str, Any]]) -> list[str | BaseException]:
        body = encode_ingest(IngestMessage(route=self._route, items=list(items)))
        message_id = await self._queue.send(body)
        return [message_id] * len(items)

    async def close(self) -> None:
        await self._batcher.close()


async def handle_ingest(request: web.Request, route: Route) -> web.Response:
    assert route.sink is not None
    await check_access(request, route.name, public=route.public)
    item_id = sink.item_id(route.name, request.headers.get("Idempotency-Key"))
    try:
        item = sink.validate(
            route.sink,
            await request.read(),
            request.match_info,
            route=route.name,
            item=item_id,
            received_at=time.time(),
        )
    except sink.Invalid as exc:
        metrics.INGEST_REJECTED.labels(route.name).inc()
        raise ApiError(400, "bad_request", str(exc)) from None
    try:
        await request.app[PACKERS][route.name].submit(item)
    except Exception as exc:
        log.warning("ingest enqueue failed", route=route.name, error=str(exc))
        raise ApiError(
            503,
            "unavailable",
            "the queue did not accept the item",
            headers={"Retry-After": RETRY_AFTER_S},
        ) from exc
    metrics.INGEST_ACCEPTED.labels(route.name).inc()
    return web.json_response({"id": item_id, "status": "accepted"}, status=202)


def _typed(kind: str, raw: str) -> Any:
    if kind in ("int", "bigint"):
        return int(raw)
    if kind == "bool":
        return raw == "True"
    return raw


async def handle_tally(request: web.Request, route: Route) -> web.Response:
    """``{"<group>": …, "results": [{"<count>": …, "<label>": n}]}`` from Redis."""
    await check_access(request, route.name, public=route.public)
    assert route.source is not None
    source = request.app[ROUTES].get(route.source)
    assert source.tally is not None and source.sink is not None
    rule = source.tally
    group_value = request.match_info[rule.group]
    counts = await request.app[TALLIES].results(source, group_value)
    kind = source.sink.fields[rule.count].type
    numeric = kind in ("int", "bigint")
    results = sorted(
        ((_typed(kind, k), n) for k, n in counts),
        key=lambda kv: kv[0] if numeric else str(kv[0]),
    )
    body = {
        rule.group: _typed(source.sink.fields[rule.group].type, group_value),
        "results": [{rule.count: k, rule.label: n} for k, n in results],
    }
    response = web.json_response(body)
    if route.edge_ttl_s is not None:
        response.headers["Cache-Control"] = f"public, s-maxage={route.edge_ttl_s}"
    return response
