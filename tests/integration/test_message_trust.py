"""Messages on the queues are claims, not instructions: a message written by anyone but
the api (anyone who may send to a queue) makes the worker write no Redis key and
publish on no channel outside what the route table allows, and reach no backend path
the table does not expose. Refused messages are counted by reason and never executed."""

from __future__ import annotations

import asyncio
import time
import uuid

import msgspec
from redis.asyncio import Redis

from devstack import Stack, backend_calls, eventually, metric
from queuefront import cache
from queuefront.envelope import CacheSpec, RequestEnvelope, decode_reply, encode_request
from queuefront.keys import Keys
from queuefront.sqs import QueueOps, open_client


def honest(stack: Stack, route: str, method: str, path: str) -> RequestEnvelope:
    """A message as the api writes it."""
    keys = Keys(stack.settings().key_prefix)
    now = time.time()
    return RequestEnvelope(
        id=uuid.uuid4().hex,
        route=route,
        method=method,
        path=path,
        reply_to=keys.reply_channel("trust-test"),
        deadline=now + 10,
        enqueued_at=now,
    )


def cached(stack: Stack, serial: str, path: str, **spec: object) -> RequestEnvelope:
    keys = Keys(stack.settings().key_prefix)
    env = honest(stack, "shared", "GET", path)
    fields: dict[str, object] = {
        "key": keys.cache(serial),
        "field": cache.field("shared", path),
        "ttl_s": 300,
        "generation_key": keys.cache_generation(serial),
        **spec,
    }
    return msgspec.structs.replace(env, cache=CacheSpec(**fields))  # type: ignore[arg-type]


async def test_forged_messages_are_refused_and_never_executed(
    stack: Stack, redis: Redis, backend_url: str
) -> None:
    settings = stack.settings()
    keys = Keys(settings.key_prefix)
    tag = uuid.uuid4().hex[:8]
    victim_key = f"{settings.key_prefix}victim-{tag}"
    victim_channel = f"victim-{tag}"
    replace = msgspec.structs.replace
    forged = {
        "route": [replace(honest(stack, "item", "GET", f"/items/{tag}-r"), route="nope")],
        "method": [honest(stack, "item", "DELETE", f"/items/{tag}-m")],
        "path": [
            honest(stack, "item", "GET", f"/admin/{tag}"),
            honest(stack, "item", "GET", f"/items/{tag}/delete"),
            honest(stack, "item", "GET", "/items/.."),
            honest(stack, "item", "GET", f"/items/{tag}%00"),
        ],
        "id": [replace(honest(stack, "item", "GET", f"/items/{tag}-i"), id="a b")],
        "reply_to": [
            replace(honest(stack, "item", "GET", f"/items/{tag}-c1"), reply_to=victim_channel),
            replace(
                honest(stack, "item", "GET", f"/items/{tag}-c2"), reply_to=keys.cache_events()
            ),
        ],
        "deadline": [replace(honest(stack, "item", "GET", f"/items/{tag}-d"), deadline=1e300)],
        "cache": [
            # a key outside the cache's namespace
            cached(stack, "s", f"/shared/{tag}-k1", key=victim_key),
            # one path's answer stored where another path's is looked up
            replace(
                cached(stack, f"{tag}-victim", f"/shared/{tag}-victim"),
                path=f"/shared/{tag}-evil",
            ),
            # a route that is not cached
            replace(
                honest(stack, "item", "GET", f"/items/{tag}-k3"),
                cache=cached(stack, "s", "/shared/x").cache,
            ),
        ],
    }
    worker = await stack.start_worker()
    pubsub = redis.pubsub()
    await pubsub.subscribe(victim_channel, keys.cache_events())
    async with open_client(settings) as sqs:
        normal = await QueueOps.open(sqs, settings.queue_normal, 0)
        for envs in forged.values():
            for env in envs:
                await normal.send(encode_request(env))

        async def all_refused() -> bool:
            for reason, envs in forged.items():
                seen = await metric(
                    worker.metrics_url, "queuefront_worker_refused_messages_total", reason=reason
                )
                if seen < len(envs):
                    return False
            return True

        await eventually(all_refused, 15, "every forged message refused, by reason")
        await normal.close()
    published = []
    while (message := await pubsub.get_message(ignore_subscribe_messages=True)) is not None:
        published.append(message)
    await pubsub.aclose()
    assert published == []
    assert not await redis.exists(victim_key)
    assert not await redis.exists(keys.cache(f"{tag}-victim"))
    calls = await asyncio.gather(
        *(backend_calls(backend_url, f"{e.method} {e.path}") for v in forged.values() for e in v)
    )
    assert sum(calls) == 0


async def test_an_honest_cached_message_is_stored_as_the_route_table_says(
    stack: Stack, redis: Redis
) -> None:
    """The control: a message as the api writes it is executed and cached — under the
    key the worker derives, for the route's TTL whatever the message asks for."""
    keys = Keys(stack.settings().key_prefix)
    serial = f"honest-{uuid.uuid4().hex[:8]}"
    path = f"/shared/{serial}"
    env = cached(stack, serial, path, ttl_s=10**9, stale_s=10**9)
    await stack.start_worker()
    async with open_client(stack.settings()) as sqs:
        normal = await QueueOps.open(sqs, stack.settings().queue_normal, 0)
        await normal.send(encode_request(env))

        async def replied() -> bool:
            return bool(await redis.exists(keys.reply(env.id)))

        await eventually(replied, 15, "the honest message answered")
        await normal.close()
    assert decode_reply(await redis.get(keys.reply(env.id))).status == 200
    assert await redis.hexists(keys.cache(serial), cache.field("shared", path))
    assert 0 < await redis.ttl(keys.cache(serial)) <= 300


async def test_a_forged_message_passes_no_header_the_api_would_withhold(
    stack: Stack, redis: Redis
) -> None:
    """A message on a route that names no override, carrying one, credentials and a
    Host: executed (it is a request the route allows), without them."""
    keys = Keys(stack.settings().key_prefix)
    withheld = [
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-Original-URL", "/admin"),
        ("Authorization", "Bearer stolen"),
        ("Host", "admin.internal"),
        ("Transfer-Encoding", "chunked"),
    ]
    env = msgspec.structs.replace(
        honest(stack, "item", "GET", f"/items/hdr-{uuid.uuid4().hex[:8]}"),
        headers=[*withheld, ("X-Kept", "yes")],
    )
    await stack.start_worker()
    async with open_client(stack.settings()) as sqs:
        normal = await QueueOps.open(sqs, stack.settings().queue_normal, 0)
        await normal.send(encode_request(env))

        async def replied() -> bool:
            return bool(await redis.exists(keys.reply(env.id)))

        await eventually(replied, 15, "the message executed")
        await normal.close()
    reply = decode_reply(await redis.get(keys.reply(env.id)))
    assert reply.status == 200, reply.body
    seen = {k.lower(): v for k, v in msgspec.json.decode(reply.body)["headers"].items()}
    assert seen["x-kept"] == "yes"
    for name, value in withheld:
        assert seen.get(name.lower()) != value, (name, seen)
