"""The write path at the api: validate, pack (``service.packer``), enqueue, 202 — and
tally reads."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from queuefront import metrics, sink
from queuefront.envelope import encode_json
from queuefront.routes import Route
from queuefront.telemetry import get_logger
from service.auth import Identity
from service.context import IDEMPOTENCY, PACKERS, ROUTES, SETTINGS, TALLIES
from service.deps import REDIS_CALL_S, bounded
from service.errors import RETRY_AFTER_S, ApiError
from service.gates import check_access, read_body
from service.idempotency import fingerprint, request_key

log = get_logger(__name__)


async def handle_ingest(request: web.Request, route: Route) -> web.Response:
    assert route.sink is not None
    client = await check_access(request, route.name, public=route.public)
    held = await read_body(
        request, route.name, max_body_bytes=route.max_body_bytes, window_s=route.timeout_s
    )
    try:
        return await _ingest(request, route, client, held.data)
    finally:
        held.release()  # the item is on the queue (or refused): nothing of it is held


async def _ingest(
    request: web.Request, route: Route, client: Identity, body: bytes
) -> web.Response:
    assert route.sink is not None
    key = request_key(request)
    item_id = sink.item_id(route.name, key, client=client.name)
    try:
        item = sink.validate(
            route.sink,
            body,
            request.match_info,
            route=route.name,
            item=item_id,
            received_at=time.time(),
        )
    except sink.Invalid as exc:
        metrics.INGEST_REJECTED.labels(route.name).inc()
        raise ApiError(400, "bad_request", str(exc)) from None
    limit = request.app[SETTINGS].max_message_bytes
    encoded = encode_json(item)
    packer = request.app[PACKERS][route.name]
    if not packer.fits(encoded):
        # even alone in its message it could never be sent: SQS would refuse it
        raise ApiError(
            413,
            "payload_too_large",
            f"the item does not fit in one {limit}-byte queue message (QF_MAX_MESSAGE_BYTES)",
        )
    if key is not None:
        print_ = fingerprint(request.method, request.raw_path, body)
        await bounded(
            "redis",
            "idempotency record",
            REDIS_CALL_S,
            request.app[IDEMPOTENCY].bind(route.name, client, key, print_),
        )
    try:
        await packer.submit(encoded)
    except Exception as exc:
        log.warning("ingest enqueue failed", route=route.name, error=str(exc))
        raise ApiError(
            503,
            "unavailable",
            "the queue did not accept the item",
            headers={"Retry-After": RETRY_AFTER_S},
        ) from exc
    metrics.INGEST_ACCEPTED.labels(route.name).inc()
    return web.Response(
        body=b'{"id":"' + item_id.encode() + b'","status":"accepted"}',
        status=202,
        content_type="application/json",
    )


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
    try:
        group = sink.path_value(rule.group, source.sink.fields[rule.group], group_value)
    except sink.Invalid as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    # the key as the writer derives it: str() of the stored value
    counts = await request.app[TALLIES].results(source, str(group))
    kind = source.sink.fields[rule.count].type
    numeric = kind in ("int", "bigint")
    results = sorted(
        ((_typed(kind, k), n) for k, n in counts),
        key=lambda kv: kv[0] if numeric else str(kv[0]),
    )
    body = {
        rule.group: group,
        "results": [{rule.count: k, rule.label: n} for k, n in results],
    }
    response = web.json_response(body)
    if route.edge_ttl_s is not None:
        response.headers["Cache-Control"] = f"public, s-maxage={route.edge_ttl_s}"
    return response
