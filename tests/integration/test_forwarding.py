"""What the backend receives: the request target exactly as the route allows, seen by a
backend that echoes its raw request line (``raw_path``)."""

from __future__ import annotations

import asyncio

import aiohttp

from devstack import Stack, metric
from queuefront.envelope import decode_request
from queuefront.sqs import QueueOps, open_client
from tests.integration.rawhttp import raw_get, raw_request

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


CLIENT_WRITTEN = [
    ("X-Forwarded-For", "6.6.6.6"),
    ("Forwarded", "for=6.6.6.6;proto=https;host=evil.example"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Proto", "https"),
    ("X-Real-IP", "6.6.6.6"),
    ("True-Client-IP", "6.6.6.6"),
    ("X-Original-URL", "/admin/delete-all"),
    ("X-Rewrite-URL", "/admin/delete-all"),
    ("X-HTTP-Method-Override", "DELETE"),
]
WITHHELD = {"forwarded", "x-real-ip", "true-client-ip", "x-original-url", "x-rewrite-url"}


async def backend_saw(
    http: aiohttp.ClientSession, method: str, path: str, headers: list[tuple[str, str]]
) -> dict[str, str]:
    """The headers the demo backend received (lower-case names), from its echo."""
    async with http.request(method, path, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        echoed = (await resp.json())["headers"]
    return {k.lower(): v for k, v in echoed.items()}


async def test_the_backend_is_told_who_the_client_is_by_the_api_alone(stack: Stack) -> None:
    """Client-written forwarding, override and rewrite headers never reach the backend;
    the forwarding headers it gets are the api's own (here: the TCP peer, plain http,
    the Host the client asked for)."""
    await stack.start_api()
    await stack.start_worker()
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        for name, value in CLIENT_WRITTEN:
            for method, path in (("GET", "/api/items/fw"), ("POST", "/api/forms/f1")):
                seen = await backend_saw(
                    http, method, path, [(name, value), ("Host", "shop.example:8443")]
                )
                assert WITHHELD.isdisjoint(seen), (name, path, seen)
                assert seen["x-forwarded-for"] == "127.0.0.1", (name, path)
                assert seen["x-forwarded-proto"] == "http", (name, path)
                assert seen["x-forwarded-host"] == "shop.example:8443", (name, path)
                if path == "/api/items/fw":  # a route that names no override
                    assert "x-http-method-override" not in seen, name
        # the route that names the override gets it, and nothing else it withholds
        seen = await backend_saw(http, "POST", "/api/forms/f2", CLIENT_WRITTEN)
        assert seen["x-http-method-override"] == "DELETE"
        assert WITHHELD.isdisjoint(seen)
        # a cached route forwards exactly what it names: no forwarding headers at all
        seen = await backend_saw(http, "GET", "/api/localized/fw-1", CLIENT_WRITTEN)
        assert not {n.lower() for n, _ in CLIENT_WRITTEN} & set(seen), seen


async def test_behind_trusted_proxies_the_backend_gets_what_they_saw(stack: Stack) -> None:
    """With one trusted proxy, the address it appended is the client, and its own
    X-Forwarded-Proto/-Host (the last entries) say how the client came in."""
    await stack.start_api(QF_TRUSTED_PROXY_HOPS="1")
    await stack.start_worker()
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        seen = await backend_saw(
            http,
            "GET",
            "/api/items/proxied",
            [
                ("X-Forwarded-For", "6.6.6.6, 198.51.100.7"),
                ("X-Forwarded-Proto", "http, https"),
                ("X-Forwarded-Host", "evil.example, shop.example"),
                ("X-Real-IP", "6.6.6.6"),
            ],
        )
    assert seen["x-forwarded-for"] == "198.51.100.7"
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-host"] == "shop.example"
    assert "x-real-ip" not in seen


NOT_UTF8 = b"caf\xe9 \xff"


async def test_a_header_that_is_not_utf8_gets_an_answer_never_a_500(stack: Stack) -> None:
    """Bytes a client library would refuse to send, on every path that reads headers:
    forwarded (as ISO-8859-1 text), a cached route's key header, idempotency keys on
    the proxy and the ingest path, forwarding headers, credentials."""
    await stack.start_api()
    await stack.start_worker()
    vote = b'{"choice": 1, "voter": "v"}'
    cases = [
        ("GET", "/api/items/latin", "X-Custom", b"", 200),
        ("GET", "/api/localized/latin-1", "X-Locale", b"", 200),
        ("POST", "/api/orders/latin", "Idempotency-Key", b"", 200),
        ("POST", "/api/polls/latin/votes", "Idempotency-Key", vote, 202),
        ("GET", "/api/items/latin", "X-Forwarded-For", b"", 200),
    ]
    for method, path, name, body, expected in cases:
        status, answer = await raw_request(stack.api_port, method, path, [(name, NOT_UTF8)], body)
        assert status == expected, (method, path, name, status, answer)
        if name in ("X-Custom", "X-Locale"):
            # the backend got the client's bytes, read as ISO-8859-1
            assert answer["headers"][name] == NOT_UTF8.decode("latin-1"), answer
    # credentials that are not UTF-8: refused as credentials, not as a crash
    await stack.start_api(QF_AUTH_API_KEYS="key-one", QF_AUTH_JWT_SECRET="s" * 32)
    for name, value in (("X-Api-Key", NOT_UTF8), ("Authorization", b"Bearer " + NOT_UTF8)):
        status, answer = await raw_request(stack.api_port, "GET", "/api/items/x", [(name, value)])
        assert status == 401, (name, answer)


async def queued_headers(
    stack: Stack, path: str, headers: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The headers of the envelope the api puts on the normal queue for ``GET path`` (no
    worker runs): what the api itself writes, before the worker's own filter."""
    settings = stack.settings()
    async with (
        aiohttp.ClientSession(base_url=stack.api_url) as http,
        open_client(settings) as sqs,
    ):
        normal = await QueueOps.open(sqs, settings.queue_normal, 0)
        waiting = asyncio.create_task(http.get(path, headers=headers))
        received = []
        while not received:
            received = await normal.receive(1, 1)
        waiting.cancel()
        await normal.close()
    return list(decode_request(received[0].body).headers)


async def test_what_the_api_queues_carries_no_client_written_forwarding(stack: Stack) -> None:
    """The api's own layer, read off the queue (no worker runs): the envelope holds the
    api's forwarding headers and none of the client's, nor an override the route does
    not name. (The worker drops the same again, for messages the api did not write.)"""
    await stack.start_api()
    headers = await queued_headers(stack, "/api/items/queued", CLIENT_WRITTEN)
    names = [name.lower() for name, _ in headers]
    assert WITHHELD.isdisjoint(names), names
    assert "x-http-method-override" not in names
    assert dict(headers)["X-Forwarded-For"] == "127.0.0.1"
    assert names.count("x-forwarded-for") == 1


async def test_credentials_are_never_written_to_the_queue(stack: Stack) -> None:
    """A client's credentials stop at the api: a message on the queue (readable by whoever
    may read the queue or its DLQ, kept up to 14 days) holds none of them. The worker drops
    them again before the backend, so only the queue shows the api's own layer."""
    await stack.start_api()
    credentials = [
        ("Cookie", "session=not-for-the-queue"),
        ("Authorization", "Bearer not-for-the-queue"),
        ("X-Api-Key", "not-for-the-queue"),
    ]
    headers = await queued_headers(stack, "/api/items/queued", [("X-Kiosk", "k1"), *credentials])
    names = {name.lower() for name, _ in headers}
    assert "x-kiosk" in names, names
    assert {"cookie", "authorization", "x-api-key"}.isdisjoint(names), names
