"""Who is asking: identities a client cannot forge, credentials checked strictly, auth
that fails closed, and invalidation as a permission of its own."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import aiohttp
import jwt
import pytest

from devstack import Stack
from queuefront.settings import ANON_RATE_LIMIT_BURST, ANON_RATE_LIMIT_RPS
from tests.integration.rawhttp import raw_request

SECRET = "s3cret-for-tests-only-0123456789abcdef"


def token(secret: str = SECRET, **claims: object) -> str:
    return jwt.encode({"sub": "kiosk-9", "exp": int(time.time()) + 60, **claims}, secret, "HS256")


async def statuses(
    http: aiohttp.ClientSession, path: str, headers_each: list[dict[str, str]]
) -> list[int]:
    out = []
    for headers in headers_each:
        async with http.get(path, headers=headers) as resp:
            out.append(resp.status)
    return out


async def test_a_made_up_x_forwarded_for_does_not_escape_the_rate_limit(stack: Stack) -> None:
    await stack.start_api(QF_ANON_RATE_LIMIT_RPS="0.1", QF_ANON_RATE_LIMIT_BURST="3")
    spoofed = [{"X-Forwarded-For": f"10.{i}.0.1"} for i in range(10)]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        got = await statuses(http, "/api/polls/p1/results", spoofed)
    assert got[:3] == [200, 200, 200]
    assert got[3:] == [429] * 7


async def test_behind_one_trusted_proxy_its_entry_is_the_client(stack: Stack) -> None:
    await stack.start_api(
        QF_ANON_RATE_LIMIT_RPS="0.1", QF_ANON_RATE_LIMIT_BURST="3", QF_TRUSTED_PROXY_HOPS="1"
    )
    # the client writes the left entries; the proxy appends the address it saw
    one_client = [{"X-Forwarded-For": f"1.2.3.{i}, 198.51.100.7"} for i in range(6)]
    other = [{"X-Forwarded-For": "198.51.100.8"}]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        assert await statuses(http, "/api/polls/p1/results", one_client) == [200] * 3 + [429] * 3
        assert await statuses(http, "/api/polls/p1/results", other) == [200]


async def test_cloudfront_viewer_address_names_the_client(stack: Stack) -> None:
    await stack.start_api(
        QF_ANON_RATE_LIMIT_RPS="0.1",
        QF_ANON_RATE_LIMIT_BURST="2",
        QF_CLIENT_IP_HEADER="CloudFront-Viewer-Address",
        QF_TRUSTED_PROXY_HOPS="2",
    )
    # one viewer: new connections (ports; 443 even looks like a last IPv6 group) and
    # other addresses of its /64 are still the same client
    viewer = [
        {"CloudFront-Viewer-Address": address, "X-Forwarded-For": f"9.9.9.{i}"}
        for i, address in enumerate(
            ["2001:db8::1:40000", "2001:db8::1:443", "2001:db8::2:443", "2001:db8::ff:8080"]
        )
    ]
    other = [{"CloudFront-Viewer-Address": "203.0.113.9:443"}]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        assert await statuses(http, "/api/polls/p1/results", viewer) == [200, 200, 429, 429]
        assert await statuses(http, "/api/polls/p1/results", other) == [200]


async def test_credentials_are_checked_strictly(stack: Stack) -> None:
    await stack.start_api(
        QF_AUTH_API_KEYS="key-one",
        QF_AUTH_JWT_SECRET=SECRET,
        QF_AUTH_JWT_AUDIENCE="queuefront",
    )
    await stack.start_worker()
    port = stack.api_port
    # a non-ASCII key is a wrong key, not a crash
    for raw_key in ("ключ".encode(), b"\xff\xfe", "kéy-one".encode("latin-1")):
        status, body = await raw_request(port, "GET", "/api/items/1", [("X-Api-Key", raw_key)])
        assert status == 401, (raw_key, body)
        assert body["error"] == "unauthorized"
    no_exp = jwt.encode({"sub": "k", "aud": "queuefront"}, SECRET, "HS256")
    cases = {
        no_exp: "exp",
        token(): "aud",
        token(aud="someone-else"): "audience",
        token(secret="another-secret-0123456789abcdef0123", aud="queuefront"): "signature",
    }
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        for bad, problem in cases.items():
            async with http.get("/api/items/1", headers={"Authorization": f"Bearer {bad}"}) as r:
                assert r.status == 401
                assert problem in (await r.json())["message"].lower()
        good = token(aud="queuefront")
        async with http.get("/api/items/1", headers={"Authorization": f"Bearer {good}"}) as r:
            assert r.status == 200
        async with http.get("/api/items/1", headers={"X-Api-Key": "key-one"}) as r:
            assert r.status == 200
        # bad credentials on a public route are refused too, not silently ignored
        async with http.get("/api/polls/p/results", headers={"X-Api-Key": "nope"}) as r:
            assert r.status == 401


async def test_auth_fails_closed(stack: Stack) -> None:
    with pytest.raises(RuntimeError, match="exited") as refused:
        await stack.start_api(QF_AUTH_DISABLED="false")
    assert "QF_AUTH_DISABLED" in str(refused.value)
    assert stack.procs[-1].popen.wait(5) != 0
    # credentials given: enforced, whatever QF_AUTH_DISABLED says
    await stack.start_api(QF_AUTH_DISABLED="true", QF_AUTH_API_KEYS="key-one")
    async with (
        aiohttp.ClientSession(base_url=stack.api_url) as http,
        http.get("/api/items/1") as resp,
    ):
        assert resp.status == 401


async def test_a_jwt_secret_shorter_than_256_bits_is_refused_at_start(stack: Stack) -> None:
    with pytest.raises(RuntimeError, match="exited") as refused:
        await stack.start_api(QF_AUTH_JWT_SECRET="x" * 31)
    assert "QF_AUTH_JWT_SECRET is 31 bytes" in str(refused.value)
    assert stack.procs[-1].popen.wait(5) != 0
    # counted in bytes: 16 two-byte characters are 256 bits
    await stack.start_api(QF_AUTH_JWT_SECRET="é" * 16)
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        good = token(secret="é" * 16)
        async with http.get(
            "/api/polls/p/results", headers={"Authorization": f"Bearer {good}"}
        ) as r:
            assert r.status == 200


async def test_failed_credentials_are_charged_to_their_address_not_to_whom_they_claim(
    stack: Stack,
) -> None:
    """Bad keys and forged tokens spend the budget of the address they come from (429
    once it is spent); the user whose name a forged token carries is not locked out,
    not even behind that same address."""
    await stack.start_api(
        QF_AUTH_API_KEYS="key-one",
        QF_AUTH_JWT_SECRET=SECRET,
        QF_ANON_RATE_LIMIT_RPS="0.1",
        QF_ANON_RATE_LIMIT_BURST="3",
        QF_TRUSTED_PROXY_HOPS="1",
    )
    forged = token(secret="not-the-secret-but-long-enough-0123456789", sub="victim")
    attacker = {"X-Forwarded-For": "203.0.113.66", "Authorization": f"Bearer {forged}"}
    victim = {"X-Forwarded-For": "203.0.113.66", "Authorization": f"Bearer {token(sub='victim')}"}
    guesser = [{"X-Forwarded-For": "198.51.100.9", "X-Api-Key": f"guess-{i}"} for i in range(5)]
    nobody = {"X-Forwarded-For": "192.0.2.44"}
    results = "/api/polls/p1/results"
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        assert await statuses(http, results, [attacker] * 6) == [401] * 3 + [429] * 3
        async with http.get(results, headers=attacker) as resp:
            assert resp.status == 429
            assert int(resp.headers["Retry-After"]) >= 1
            assert (await resp.json())["error"] == "rate_limited"
        assert await statuses(http, results, [victim] * 5) == [200] * 5
        assert await statuses(http, results, guesser) == [401] * 3 + [429] * 2
        # no credentials on a route that needs them: a failure too
        assert await statuses(http, "/api/items/1", [nobody] * 5) == [401] * 3 + [429] * 2
        # good credentials from an exhausted address still pass
        key = {"X-Forwarded-For": "198.51.100.9", "X-Api-Key": "key-one"}
        assert await statuses(http, results, [key] * 5) == [200] * 5


async def test_public_routes_are_rate_limited_by_default(stack: Stack) -> None:
    """With no setting, anonymous clients get ``ANON_RATE_LIMIT_RPS`` per address and
    route after a burst of ``ANON_RATE_LIMIT_BURST``; credentialed ones are not limited."""
    del stack.env["QF_ANON_RATE_LIMIT_RPS"]  # the test stacks turn it off
    await stack.start_api(QF_AUTH_API_KEYS="key-one")
    path = f"/api/polls/p-{uuid.uuid4().hex[:6]}/results"
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:

        async def flood(n: int, headers: dict[str, str]) -> Counter[int]:
            todo = iter(range(n))
            got: Counter[int] = Counter()

            async def client() -> None:
                for _ in todo:
                    async with http.get(path, headers=headers) as resp:
                        got[resp.status] += 1

            await asyncio.gather(*(client() for _ in range(32)))
            return got

        started = time.monotonic()
        anonymous = await flood(800, {})
        elapsed = time.monotonic() - started
        credentialed = await flood(400, {"X-Api-Key": "key-one"})
    assert set(anonymous) == {200, 429}, anonymous
    assert anonymous[200] >= ANON_RATE_LIMIT_BURST
    assert anonymous[200] <= ANON_RATE_LIMIT_BURST + ANON_RATE_LIMIT_RPS * elapsed + 2
    assert credentialed == {200: 400}


async def test_invalidation_is_a_permission_of_its_own(stack: Stack) -> None:
    await stack.start_api(
        QF_AUTH_API_KEYS="caller",
        QF_AUTH_INVALIDATE_KEYS="operator",
        QF_AUTH_JWT_SECRET=SECRET,
    )
    serial = {"serial": f"SN-{uuid.uuid4().hex[:6]}"}
    allowed = [
        {"X-Api-Key": "operator"},
        {"Authorization": f"Bearer {token(scope='read cache:invalidate')}"},
        {"Authorization": f"Bearer {token(scp=['cache:invalidate'])}"},
    ]
    refused = [
        {"X-Api-Key": "caller"},
        {"Authorization": f"Bearer {token()}"},
        {"Authorization": f"Bearer {token(scope='cache:invalidate:not')}"},
    ]
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        for headers in allowed:
            async with http.post("/api/cache/invalidate", json=serial, headers=headers) as r:
                assert r.status == 200, headers
        for headers in refused:
            async with http.post("/api/cache/invalidate", json=serial, headers=headers) as r:
                assert r.status == 403, headers
                assert (await r.json())["error"] == "forbidden"
        async with http.post("/api/cache/invalidate", json=serial) as r:
            assert r.status == 401
        # the operator's key invalidates, and does nothing else
        async with http.get("/api/items/1", headers={"X-Api-Key": "operator"}) as r:
            assert r.status == 403
