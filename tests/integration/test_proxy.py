"""The proxy path seen from outside: real api and worker processes, Redis, SQS, backend."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import jwt
from redis.asyncio import Redis

from devstack import Stack, backend_calls, eventually, metric
from queuefront.envelope import Reply, decode_request, encode_reply
from queuefront.sqs import QueueOps, open_client


async def test_round_trip_forwards_request_and_strips_credentials(stack: Stack) -> None:
    await stack.start_api()
    await stack.start_worker()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stack.api_url}/api/login?store=7",
            data=b'{"user": "kiosk-1"}',
            headers={
                "X-Kiosk": "k1",
                "Cookie": "secret=1",
                "Authorization": "Bearer not-for-the-backend",
                "X-Api-Key": "not-for-the-backend",
                "Content-Type": "application/json",
            },
        ) as resp,
    ):
        assert resp.status == 200
        body = await resp.json()
        assert resp.headers["X-Request-Id"]
    assert body["method"] == "POST"
    assert body["path"] == "/login"
    assert body["params"] == {"store": "7"}
    assert body["body"] == '{"user": "kiosk-1"}'
    forwarded = {name.lower(): value for name, value in body["headers"].items()}
    assert forwarded.get("x-kiosk") == "k1"
    # the backend echoes every header it gets: credentials must not be among them
    assert {"cookie", "authorization", "x-api-key"}.isdisjoint(forwarded), forwarded


async def test_backend_status_passes_through_and_edge_ttl_header(stack: Stack) -> None:
    await stack.start_api()
    await stack.start_worker()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.api_url}/api/polls") as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "public, s-maxage=3"
        async with http.get(f"{stack.api_url}/api/polls", headers={"X-Demo-Status": "503"}) as r:
            assert r.status == 503
            assert "s-maxage" not in r.headers.get("Cache-Control", "")
        async with http.get(f"{stack.api_url}/api/items/1", headers={"X-Demo-Status": "404"}) as r:
            assert r.status == 404


async def test_cache_hit_invalidate_and_errors_not_cached(stack: Stack, backend_url: str) -> None:
    await stack.start_api()
    await stack.start_worker()
    serial = f"SN-{uuid.uuid4().hex[:8]}"
    products, managers = f"/api/products/{serial}", f"/api/managers/{serial}"
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        for path in (products, managers):
            async with http.get(path) as resp:
                assert resp.status == 200
                assert resp.headers["X-Cache"] == "MISS"
        async with http.get(products) as resp:
            assert resp.status == 200
            assert resp.headers["X-Cache"] == "HIT"
            assert (await resp.json())["path"] == f"/products/{serial}"
        assert await backend_calls(backend_url, f"GET /products/{serial}") == 1

        async with http.post("/api/cache/invalidate", json={"serial": serial}) as resp:
            assert resp.status == 200
            assert (await resp.json())["invalidated"] is True
        # every response derived from the serial is gone, not only one route's
        for path, backend_path in ((products, "/products"), (managers, "/managers")):
            async with http.get(path) as resp:
                assert resp.headers["X-Cache"] == "MISS"
            assert await backend_calls(backend_url, f"GET {backend_path}/{serial}") == 2
        async with http.get(products) as resp:
            assert resp.headers["X-Cache"] == "HIT"

        bad = f"SN-{uuid.uuid4().hex[:8]}"
        async with http.get(f"/api/products/{bad}", headers={"X-Demo-Status": "500"}) as resp:
            assert resp.status == 500
        async with http.get(f"/api/products/{bad}") as resp:
            assert resp.status == 200
            assert resp.headers["X-Cache"] == "MISS"
        assert await backend_calls(backend_url, f"GET /products/{bad}") == 2
    hits = await metric(stack.api_metrics_url, "queuefront_cache_requests_total", result="hit")
    assert hits == 2


async def test_timeout_gives_504_and_late_reply_is_counted(stack: Stack, redis: Redis) -> None:
    """No worker: the request gets its 504 when its 1 s window ends; a reply published
    for it afterwards (as a slow worker would) is counted as late and dropped."""
    await stack.start_api()
    settings = stack.settings()
    async with (
        aiohttp.ClientSession() as http,
        open_client(settings) as sqs,
    ):
        started = time.monotonic()
        async with http.get(f"{stack.api_url}/api/quick/1") as resp:
            elapsed = time.monotonic() - started
            body = await resp.json()
        assert resp.status == 504
        assert body["error"] == "timeout"
        assert body["message"] == "Request processing timed out"
        assert body["request_id"] == resp.headers["X-Request-Id"]
        assert 1.0 <= elapsed < 1.0 + 1.0

        normal = await QueueOps.open(sqs, settings.queue_normal, 0)
        received = []
        while not received:
            received = await normal.receive(1, 1)
        env = decode_request(received[0].body)
        assert env.id == body["request_id"]
        late = Reply(id=env.id, status=200, headers=[], body=b"too late")
        await redis.publish(env.reply_to, encode_reply(late))
        await normal.close()

    async def counted() -> bool:
        late = await metric(stack.api_metrics_url, "queuefront_replies_total", outcome="late")
        return late == 1

    await eventually(counted, 3, "the late reply counted")
    timeouts = await metric(stack.api_metrics_url, "queuefront_replies_total", outcome="timeout")
    assert timeouts == 1


async def test_bad_input(stack: Stack) -> None:
    await stack.start_api()
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        async with http.post("/api/login", data=b"x" * 1_100_000) as resp:
            assert resp.status == 413
            body = await resp.json()
            assert body["error"] == "payload_too_large"
            assert body["request_id"] == resp.headers["X-Request-Id"]
        # fits in aiohttp's limit but not in one SQS message once wrapped in the envelope
        async with http.post("/api/login", data=b"y" * 1_048_576) as resp:
            assert resp.status == 413
        async with http.get("/api/nowhere") as resp:
            assert resp.status == 404
            body = await resp.json()
            assert body["error"] == "not_found"
            assert "GET /api/nowhere" in body["message"]
            assert resp.headers["X-Request-Id"] == body["request_id"]
        async with http.delete("/api/login") as resp:
            assert resp.status == 405
            assert (await resp.json())["error"] == "method_not_allowed"
        async with http.post("/api/cache/invalidate", data=b"{not json") as resp:
            assert resp.status == 400
            assert "serial" in (await resp.json())["message"]
        async with http.post("/api/cache/invalidate", json={"serial": 5}) as resp:
            assert resp.status == 400


async def test_auth_and_rate_limit(stack: Stack) -> None:
    secret = "s3cret-for-tests-only-0123456789abcdef"
    await stack.start_api(
        QF_AUTH_API_KEYS="key-one,key-two",
        QF_AUTH_JWT_SECRET=secret,
        QF_RATE_LIMIT_RPS="1",
        QF_RATE_LIMIT_BURST="3",
    )
    await stack.start_worker()
    token = jwt.encode({"sub": "kiosk-9", "exp": int(time.time()) + 60}, secret, "HS256")
    expired = jwt.encode({"sub": "kiosk-9", "exp": int(time.time()) - 60}, secret, "HS256")
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        async with http.get("/api/items/1") as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "unauthorized"
        async with http.get("/api/items/1", headers={"X-Api-Key": "wrong"}) as resp:
            assert resp.status == 401
        async with http.get("/api/items/1", headers={"Authorization": f"Bearer {expired}"}) as r:
            assert r.status == 401
            assert "expired" in (await r.json())["message"].lower()
        async with http.get("/api/items/1", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200
        async with http.get("/api/polls") as resp:  # public route
            assert resp.status == 200
        statuses = []
        for _ in range(5):
            async with http.get("/api/items/2", headers={"X-Api-Key": "key-two"}) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    assert int(resp.headers["Retry-After"]) >= 1
        assert statuses[:3] == [200, 200, 200]
        assert 429 in statuses[3:]


async def test_readyz_names_the_dependency_that_is_down(stack: Stack) -> None:
    await stack.start_api(QF_BACKLOG_POLL_S="0.2")
    async with aiohttp.ClientSession() as http:
        async with http.get(stack.api_readyz_url) as resp:
            assert resp.status == 200
        async with http.get(f"{stack.api_url}/healthz") as resp:
            assert resp.status == 200
        # readiness and metrics live on the probe port only, never on the public one
        for path in ("/readyz", "/metrics"):
            async with http.get(f"{stack.api_url}{path}") as resp:
                assert resp.status == 404, path
    # the SQS endpoint disappears for this pod: its queues are deleted
    from queuefront.queues import delete_queues

    await delete_queues(stack.settings())
    async with aiohttp.ClientSession() as http:
        for _ in range(60):
            async with http.get(stack.api_readyz_url) as resp:
                if resp.status == 503:
                    body = await resp.json()
                    assert body["down"] == ["sqs"]
                    assert "sqs" in body["message"]
                    return
            await asyncio.sleep(0.1)
    raise AssertionError("readyz never reported sqs down")
