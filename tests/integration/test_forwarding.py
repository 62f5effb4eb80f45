"""What the backend receives: the request target exactly as the route allows, seen by a
backend that echoes its raw request line (``raw_path``)."""

from __future__ import annotations

from devstack import Stack, metric
from tests.integration.rawhttp import raw_get

FAITHFUL = [
    # (client's target, backend's raw request target, backend's decoded query)
    (
        "/api/items/%C3%A9t%C3%A9?q=red%20shoes",
        "/items/%C3%A9t%C3%A9?q=red%20shoes",
        {"q": "red shoes"},
    ),
    ("/api/items/a%3Fb", "/items/a%3Fb", {}),  # no injected query
    ("/api/items/a%23b?x=1", "/items/a%23b?x=1", {"x": "1"}),  # no cut query
    ("/api/items/a%2Fb", "/items/a%2Fb", {}),  # one segment stays one segment
    ("/api/items/1?a=b%26c%3Dd&e=f", "/items/1?a=b%26c%3Dd&e=f", {"a": "b&c=d", "e": "f"}),
    ("/api/items/x?tag=%7B%7D|", "/items/x?tag=%7B%7D%7C", {"tag": "{}|"}),
    ("/api/lookup/a&b=c?page=2", "/v2/find?sku=a%26b%3Dc&page=2", {"sku": "a&b=c", "page": "2"}),
]


async def test_the_backend_gets_the_encoded_target(stack: Stack) -> None:
    await stack.start_api()
    await stack.start_worker()
    for sent, expected_raw, expected_query in FAITHFUL:
        status, body = await raw_get(stack.api_port, sent)
        assert status == 200, (sent, body)
        assert body["raw_path"] == expected_raw, sent
        assert body["params"] == expected_query, sent


UNFORWARDABLE = [
    "/api/items/x%01y",
    "/api/items/x%00y",
    "/api/items/%7F",
    "/api/items/%C2%85",
    "/api/items/ok?q=a%0Db",
    "/api/items/%2E%2E",
    "/api/items/%2e",
    "/api/items/..%2Fadmin",
    "/api/items/a%2F..%2F..%2Fb",
    "/api/items/a%5C..%5Cb",
    "/api/polls?x=%09",
]


async def test_unforwardable_targets_get_400_before_anything_is_enqueued(stack: Stack) -> None:
    await stack.start_api()
    for sent in UNFORWARDABLE:
        status, body = await raw_get(stack.api_port, sent)
        assert status == 400, (sent, body)
        assert body["error"] == "bad_request"
        assert "not allowed" in body["message"], sent
    sends = await metric(
        stack.api_metrics_url, "queuefront_sqs_calls_total", operation="SendMessageBatch"
    )
    assert sends == 0
