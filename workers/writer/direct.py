"""Votes that came straight from API Gateway (``ingest_direct`` in deploy/terraform).

API Gateway's SQS integration sends one vote per message, in the shape the edge module's
request template writes (deploy/terraform/modules/edge/api.tf; AWS re:Post knowledge
center "api-gateway-rest-api-sqs-errors" and the SQS API reference, SendMessage
``MessageAttribute.N.*``, for the form API Gateway posts):

- the message body is the request body as the client sent it;
- message attributes: ``route`` (the route's name in the route table), ``request_id``
  (API Gateway's ``$context.requestId``), ``received_at_ms`` (``$context.requestTimeEpoch``)
  and ``path.<name>`` for each path parameter.

No api pod has seen such a body, so the writer is the first code to: it validates it
against the route's sink (``queuefront.sink.validate``, the api's own check), and a message
that does not fit is refused to the dead-letter queue at once, as a self-describing JSON
body with the reason (``DeadDirect``), counted in ``queuefront_ingest_refused_total``. A
valid one becomes an ordinary item whose id is derived from API Gateway's request id, so a
redelivery, or SQS's at-least-once duplicate, stores and counts once.

A refused message is written to the DLQ by the writer rather than left for SQS's redrive,
for two reasons: it carries its reason there, and its body holds everything the attributes
held (``queuefront admin redrive`` moves bodies only), so a message redriven after a fix
of the route table is validated again with nothing lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import msgspec

from queuefront import metrics, sink
from queuefront.consumer import Held
from queuefront.item import IngestItem
from queuefront.routes import Route

ROUTE_ATTRIBUTE = "route"
REQUEST_ID_ATTRIBUTE = "request_id"
RECEIVED_AT_ATTRIBUTE = "received_at_ms"
PATH_ATTRIBUTE_PREFIX = "path."

DIRECT_ITEM_NAMESPACE = uuid.UUID("0b8f4a55-3c2d-4e7a-9f61-5d0c7e3a2b19")
"""uuid5 namespace of item ids derived from API Gateway request ids (a namespace of its
own: such an id never equals one the api derived from an Idempotency-Key)."""

REASON_UNKNOWN_ROUTE = "unknown_route"
REASON_INVALID = "invalid"
REASON_MALFORMED = "malformed"
"""``queuefront_ingest_refused_total``'s reasons: no ingest route of that name, a body
that does not fit the sink, attributes that are not what API Gateway sends."""


class DeadDirect(msgspec.Struct, frozen=True, kw_only=True):
    """A refused direct message as the writer writes it to the DLQ: what the attributes
    said, the body as it came, and why it was refused."""

    v: int = 1
    direct: dict[str, Any]
    body: str
    refused: str


_dead_decoder = msgspec.json.Decoder(DeadDirect)
_json = msgspec.json.Encoder()


def is_direct(attributes: Mapping[str, str]) -> bool:
    """A message of API Gateway's integration (queuefront's own carry no attributes)."""
    return REQUEST_ID_ATTRIBUTE in attributes


def from_dead_letter(body: str) -> tuple[dict[str, str], str] | None:
    """(attributes, body) of a refused direct message sent back from the DLQ; None when
    ``body`` is not one."""
    if '"direct"' not in body:
        return None
    try:
        dead = _dead_decoder.decode(body)
    except msgspec.DecodeError:
        return None
    attributes = {str(k): str(v) for k, v in dead.direct.items() if k != "path"}
    path = dead.direct.get("path") or {}
    if isinstance(path, dict):
        attributes.update({f"{PATH_ATTRIBUTE_PREFIX}{k}": str(v) for k, v in path.items()})
    return attributes, dead.body


def item_id(request_id: str) -> str:
    """The row id of API Gateway request ``request_id``: the same request, delivered twice,
    is the same row."""
    return str(uuid.uuid5(DIRECT_ITEM_NAMESPACE, request_id))


class Refused(Exception):
    """A direct message the writer will not store; ``reason`` labels the metric."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def parse(
    attributes: Mapping[str, str], body: str, sinks: Mapping[str, Route], *, sent_at: float
) -> tuple[Route, IngestItem]:
    """The route and the item of one direct message, or ``Refused``."""
    route_name = attributes.get(ROUTE_ATTRIBUTE, "")
    route = sinks.get(route_name)
    if route is None or route.sink is None:
        raise Refused(REASON_UNKNOWN_ROUTE, f"no ingest route {route_name!r}")
    request_id = attributes.get(REQUEST_ID_ATTRIBUTE, "")
    if not request_id:
        raise Refused(REASON_MALFORMED, "no request_id attribute")
    try:
        received_at = int(attributes[RECEIVED_AT_ATTRIBUTE]) / 1000
    except (KeyError, ValueError):
        received_at = sent_at  # SQS's own time: seconds later at most
    path_params = {
        name.removeprefix(PATH_ATTRIBUTE_PREFIX): value
        for name, value in attributes.items()
        if name.startswith(PATH_ATTRIBUTE_PREFIX)
    }
    missing = [p for p in route.params if p not in path_params]
    if missing:
        raise Refused(REASON_MALFORMED, f"no path parameter {', '.join(missing)}")
    try:
        item = sink.validate(
            route.sink,
            body.encode(),
            path_params,
            route=route.name,
            item=item_id(request_id),
            received_at=received_at,
        )
    except sink.Invalid as exc:
        raise Refused(REASON_INVALID, str(exc)) from None
    return route, item


def dead_letter_body(attributes: Mapping[str, str], body: str, reason: str) -> str:
    """The DLQ body of a refused message: everything it came with, and why."""
    direct: dict[str, Any] = {
        k: v for k, v in attributes.items() if not k.startswith(PATH_ATTRIBUTE_PREFIX)
    }
    direct["path"] = {
        k.removeprefix(PATH_ATTRIBUTE_PREFIX): v
        for k, v in attributes.items()
        if k.startswith(PATH_ATTRIBUTE_PREFIX)
    }
    return _json.encode(DeadDirect(direct=direct, body=body, refused=reason)).decode()


def count_refusal(route: str, reason: str) -> None:
    metrics.INGEST_REFUSED.labels(route or "-", reason).inc()


def attributes_of(held: Held) -> tuple[Mapping[str, str], str] | None:
    """(attributes, body) when ``held`` is a direct message, fresh or sent back from the
    DLQ; None for queuefront's own packed messages."""
    message = held.message
    if is_direct(message.attributes):
        return message.attributes, message.body
    return from_dead_letter(message.body)
