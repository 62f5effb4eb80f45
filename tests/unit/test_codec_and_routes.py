"""Envelope codec, header filtering and route-table validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from queuefront.envelope import (
    CacheSpec,
    Reply,
    RequestEnvelope,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    pack_body,
)
from queuefront.headers import request_headers_to_forward, response_headers_to_return
from queuefront.routes import RouteTable, load_routes
from queuefront.upstream import Unforwardable, request_target

ROOT = Path(__file__).resolve().parents[2]


def envelope(body: bytes) -> RequestEnvelope:
    text, b64 = pack_body(body)
    return RequestEnvelope(
        id="r1",
        route="item",
        method="POST",
        path="/items/1?x=1",
        headers=[("X-A", "1")],
        body=text,
        body_b64=b64,
        reply_to="replies:p",
        deadline=2.0,
        enqueued_at=1.0,
        cache=CacheSpec(key="cache:SN", field="item|/api/items/1", ttl_s=5),
    )


@pytest.mark.parametrize(
    "body", [b"", b'{"a": "\xc3\xa9"}', b"\x00\x01\xff binary", "\ufffe".encode()]
)
def test_request_round_trips_any_body(body: bytes) -> None:
    env = envelope(body)
    wire = encode_request(env)
    assert "\ufffe" not in wire  # SQS refuses these characters
    assert decode_request(wire) == env
    assert decode_request(wire).body_bytes() == body


def test_utf8_bodies_stay_text_so_the_whole_message_limit_is_usable() -> None:
    assert pack_body(b'{"k": "v"}') == ('{"k": "v"}', False)
    assert pack_body(b"\xff")[1] is True


def test_reply_round_trip() -> None:
    reply = Reply(id="r", status=201, headers=[("Content-Type", "text/plain")], body=b"\x00ok")
    assert decode_reply(encode_reply(reply)) == reply


def test_credentials_and_hop_by_hop_headers_are_not_forwarded() -> None:
    kept = request_headers_to_forward(
        [
            ("Authorization", "Bearer x"),
            ("Cookie", "a=1"),
            ("X-Api-Key", "k"),
            ("Connection", "keep-alive, X-Private"),
            ("X-Private", "1"),
            ("Host", "h"),
            ("Content-Length", "3"),
            ("Accept", "application/json"),
            ("X-Demo-Delay-Ms", "5"),
        ]
    )
    assert kept == [("Accept", "application/json"), ("X-Demo-Delay-Ms", "5")]
    assert response_headers_to_return([("Transfer-Encoding", "chunked"), ("ETag", "1")]) == [
        ("ETag", "1")
    ]


def test_the_route_table_loads() -> None:
    table = load_routes(ROOT / "config" / "routes.toml")
    by_name = {r.name: r for r in table.routes}
    assert by_name["login"].priority == "high"
    assert by_name["products_and_promotions"].cache is not None
    assert by_name["products_and_promotions"].cache.ttl_s == 300
    assert by_name["polls"].edge_ttl_s == 3
    assert request_target(by_name["item"], "/api/items/7", "", {"item_id": "7"}) == "/items/7"


def route(**fields: object) -> dict[str, object]:
    return {"name": "r", "method": "GET", "path": "/api/x/{serial}", **fields}


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"cache": {"key": "nope", "ttl_s": 5}}, "cache.key"),
        ({"timeout_s": 30}, "less than or equal to 29"),
        ({"priority": "urgent"}, "priority"),
        ({"upstream": "/legacy/{other}"}, "unknown parameters"),
        ({"colour": "red"}, "colour"),
        (
            {
                "kind": "ingest",
                "sink": {"table": "t", "fields": {"serial": {"type": "text", "source": "path"}}},
                "tally": {"group": "serial", "count": "serial"},
            },
            "bounded domain",
        ),
        (
            {
                "kind": "ingest",
                "sink": {
                    "table": "t",
                    "fields": {
                        "serial": {"type": "text", "source": "path"},
                        "n": {"type": "int", "min": 0, "max": 5000},
                    },
                },
                "tally": {"group": "serial", "count": "n"},
            },
            "bounded domain",
        ),
        (
            {"kind": "ingest", "sink": {"table": "t", "fields": {"x": {"type": "text", "min": 1}}}},
            "int and bigint fields only",
        ),
        ({"forward_headers": ["X-Forwarded-For"]}, "never forwarded"),
        ({"forward_headers": ["Authorization"]}, "never forwarded"),
        ({"forward_headers": ["X Method"]}, "not a header name"),
        ({"cache": {"key": "serial", "ttl_s": 5, "headers": ["X-Real-IP"]}}, "never forwarded"),
        (
            {
                "cache": {"key": "serial", "ttl_s": 5},
                "forward_headers": ["X-HTTP-Method-Override"],
            },
            "cache.headers",
        ),
    ],
)
def test_bad_route_tables_name_the_problem(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        RouteTable.model_validate({"routes": [route(**fields)]})


def test_upstream_template() -> None:
    table = RouteTable.model_validate({"routes": [route(upstream="/legacy/p/{serial}")]})
    only = table.routes[0]
    assert request_target(only, "/api/x/S1", "", {"serial": "S1"}) == "/legacy/p/S1"
    # the client's encoding is kept; what would change the target's shape is encoded
    encoded = request_target(only, "/api/x/a%2Fb%3F", "q=red%20shoes", {})
    assert encoded == "/legacy/p/a%2Fb%3F?q=red%20shoes"
    assert request_target(only, "/api/x/%C3%A9t%C3%A9", "", {}) == "/legacy/p/%C3%A9t%C3%A9"
    assert request_target(only, "/api/x/a|b%zz", "x={y}", {}) == "/legacy/p/a%7Cb%25zz?x=%7By%7D"


def test_upstream_template_with_a_query() -> None:
    table = RouteTable.model_validate({"routes": [route(upstream="/find?sku={serial}")]})
    only = table.routes[0]
    # a parameter placed in a query value cannot add parameters of its own
    assert request_target(only, "/api/x/a&b=c+d", "page=2", {}) == "/find?sku=a%26b%3Dc%2Bd&page=2"


@pytest.mark.parametrize(
    ("raw_path", "raw_query"),
    [
        ("/api/x/a%01b", ""),
        ("/api/x/a%00", ""),
        ("/api/x/%7F", ""),
        ("/api/x/%C2%85", ""),
        ("/api/x/ok", "q=%0A"),
        ("/api/x/%2E%2E", ""),
        ("/api/x/%2e", ""),
        ("/api/x/..%2Fadmin", ""),
        ("/api/x/a%5C..%5Cb", ""),
    ],
)
def test_unforwardable_input_is_refused(raw_path: str, raw_query: str) -> None:
    table = RouteTable.model_validate({"routes": [route()]})
    with pytest.raises(Unforwardable):
        request_target(table.routes[0], raw_path, raw_query, {})


def test_duplicate_route_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="duplicate"):
        RouteTable.model_validate({"routes": [route(), route()]})


def test_ingest_items_joined_as_encoded_equal_the_encoded_message() -> None:
    """The api joins items it encoded once; the writer must read exactly the message
    `encode_ingest` would have written, for any route name."""
    from queuefront.envelope import (
        IngestMessage,
        decode_ingest,
        encode_ingest,
        encode_ingest_items,
        encode_json,
        ingest_overhead_bytes,
    )

    items = [{"id": "a", "choice": 1}, {"id": "b", "voter": 'q"uote\u00e9'}]
    for route in ("vote", 'odd "route" \u00e9'):
        joined = encode_ingest_items(route, [encode_json(i) for i in items])
        assert joined == encode_ingest(IngestMessage(route=route, items=items))
        assert decode_ingest(joined) == IngestMessage(route=route, items=items)
        alone = encode_ingest_items(route, [encode_json(items[0])])
        assert len(alone.encode()) == ingest_overhead_bytes(route) + len(encode_json(items[0]))


SQS_FORBIDDEN = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""What SQS refuses in a message body (``InvalidMessageContents``)."""
AWKWARD_TEXT = [
    "plain",
    "\uffff",
    "a\ufffe\uffffb",
    "\x00\x01\x08\x0b\x0c\x1f\x7f\x85 controls",
    "\ufffd\ufdd0\U0001fffe\U0010ffff edges",
    'q"uo\\te',
]


@pytest.mark.parametrize("text", AWKWARD_TEXT)
def test_every_message_obeys_sqs_s_character_rule_and_means_the_same(text: str) -> None:
    """Client text anywhere in a message — header, target, body, an item's field — gives
    a body SQS accepts, which decodes to exactly what the client sent."""
    from queuefront.envelope import IngestMessage, decode_ingest, encode_ingest, encode_item

    env = RequestEnvelope(
        id="r1",
        route="item",
        method="POST",
        path="/items/" + text,
        headers=[("X-Note", text)],
        body=text,
        reply_to="replies:p",
        deadline=2.0,
        enqueued_at=1.0,
    )
    wire = encode_request(env)
    assert not SQS_FORBIDDEN.search(wire)
    assert decode_request(wire) == env
    item = {"id": "a", "voter": text, text: [text]}
    message = encode_ingest(IngestMessage(route="vote", items=[item]))
    assert not SQS_FORBIDDEN.search(message)
    assert decode_ingest(message).items == [item]
    assert not SQS_FORBIDDEN.search(encode_item(item).decode())
