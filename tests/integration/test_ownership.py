"""A held message always has an owner, and one request makes at most one backend call.

Messages are put on the queue directly where the api would refuse them (a path it would
answer 400) or to play SQS's at-least-once delivery (the same request twice)."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import aiohttp
import msgspec
from redis.asyncio import Redis

from devstack import Stack, backend_calls, eventually, free_port, kill_clients, metric
from queuefront.envelope import (
    Reply,
    RequestEnvelope,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from queuefront.keys import Keys
from queuefront.sqs import QueueOps, open_client


def envelope(stack: Stack, path: str, *, window_s: float = 20.0) -> RequestEnvelope:
    settings = stack.settings()
    now = time.time()
    return RequestEnvelope(
        id=uuid.uuid4().hex,
        route="item",
        method="GET",
        path=path,
        reply_to=Keys(settings.key_prefix).reply_channel("nobody"),
        deadline=now + window_s,
        enqueued_at=now,
    )


async def none_in_flight(queue: QueueOps) -> bool:
    attrs = await queue.attributes("ApproximateNumberOfMessagesNotVisible")
    return int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 0


async def test_a_request_the_backend_call_cannot_even_send_is_answered_and_deleted(
    stack: Stack, redis: Redis
) -> None:
    """A header value with control characters makes the HTTP client refuse to send: the
    worker answers 502 (naming no address) and deletes the message; nothing stays in
    flight."""
    await stack.start_worker()
    settings = stack.settings()
    keys = Keys(settings.key_prefix)
    bad = [
        msgspec.structs.replace(envelope(stack, "/items/x"), headers=[("X-Note", value)])
        for value in ("a\x00b", "a\x01b", "a\r\nX-Injected: 1")
    ]
    async with open_client(settings) as sqs:
        normal = await QueueOps.open(sqs, settings.queue_normal, 0)
        for env in bad:
            await normal.send(encode_request(env))

        async def all_answered() -> bool:
            return all([await redis.exists(keys.reply(env.id)) for env in bad])

        await eventually(all_answered, 10, "a reply for every unsendable request")
        for env in bad:
            reply = decode_reply(await redis.get(keys.reply(env.id)))
            assert reply.status == 502
            assert b"could not be forwarded" in reply.body
            assert b"127.0.0.1" not in reply.body
        await eventually(lambda: none_in_flight(normal), 10, "no message left in flight")
        await normal.close()


async def test_duplicate_delivery_calls_the_backend_once(
    stack: Stack, redis: Redis, backend_url: str
) -> None:
    """The same request delivered twice (SQS is at-least-once), with two workers taking
    one copy each: one backend call; the second copy is settled by the first's reply."""
    await stack.start_worker()
    await stack.start_worker()
    settings = stack.settings()
    keys = Keys(settings.key_prefix)
    path = f"/items/dup-{uuid.uuid4().hex[:8]}"
    env = envelope(stack, path)
    async with open_client(settings) as sqs:
        normal = await QueueOps.open(sqs, settings.queue_normal, 0)
        await asyncio.gather(normal.send(encode_request(env)), normal.send(encode_request(env)))

        async def replied() -> bool:
            return bool(await redis.exists(keys.reply(env.id)))

        async def both_gone() -> bool:
            attrs = await normal.attributes(
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"
            )
            return sum(int(v) for v in attrs.values()) == 0

        # the emulator's counts lag a send: first the reply, then both copies gone
        await eventually(replied, 15, "the request answered")
        await eventually(both_gone, 15, "both copies deleted")
        await normal.close()
    assert await backend_calls(backend_url, f"GET {path}") == 1
    assert decode_reply(await redis.get(keys.reply(env.id))).status == 200


async def test_a_request_with_a_stored_answer_never_reaches_the_backend(
    stack: Stack, redis: Redis, backend_url: str
) -> None:
    """The api leaves an answer under reply:<id> when it gave up on a send that may
    still complete: the worker settles such a message without a backend call."""
    await stack.start_worker()
    settings = stack.settings()
    keys = Keys(settings.key_prefix)
    path = f"/items/settled-{uuid.uuid4().hex[:8]}"
    env = envelope(stack, path)
    tombstone = Reply(id=env.id, status=503, headers=[], body=b"")
    await redis.set(keys.reply(env.id), encode_reply(tombstone), ex=60)
    worker_metrics = stack.procs[-1].metrics_url

    async def settled() -> bool:
        seen = await metric(worker_metrics, "queuefront_worker_messages_total", outcome="duplicate")
        return seen == 1

    async with open_client(settings) as sqs:
        normal = await QueueOps.open(sqs, settings.queue_normal, 0)
        await normal.send(encode_request(env))
        await eventually(settled, 10, "the worker settled it as a duplicate")
        await eventually(lambda: none_in_flight(normal), 10, "and deleted it")
        await normal.close()
    assert await backend_calls(backend_url, f"GET {path}") == 0


async def test_work_cut_short_at_shutdown_is_not_called_again(
    stack: Stack, backend_url: str
) -> None:
    """A worker stopping with an 8 s call still running gives up after its shutdown
    timeout and releases the message; the next worker takes it, sees the claim and does
    not call the backend again (the first call may well have done its work)."""
    await stack.start_api()
    first = await stack.start_worker(QF_SHUTDOWN_TIMEOUT_S="0.5")
    path = f"cut-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:
        call = asyncio.create_task(
            http.get(f"/api/items/{path}", headers={"X-Demo-Delay-Ms": "8000"})
        )

        async def started() -> bool:
            return await backend_calls(backend_url, f"GET /items/{path}") > 0

        await eventually(started, 5, "the backend call started")
        first.signal(signal.SIGTERM)
        first.popen.wait(10)
        second = await stack.start_worker()

        async def seen_by_second() -> bool:
            seen = await metric(
                second.metrics_url,
                "queuefront_worker_messages_total",
                outcome="in_progress_elsewhere",
            )
            return seen >= 1

        await eventually(seen_by_second, 10, "the second worker took the message")
        call.cancel()
    assert await backend_calls(backend_url, f"GET /items/{path}") == 1


async def test_an_undecodable_stored_reply_does_not_stop_the_pod(
    stack: Stack, redis: Redis
) -> None:
    """A garbage value under reply:<id> met by the recovery MGET is dropped and counted;
    the listener goes on, the pod stays ready and later replies are delivered."""
    await stack.start_api()
    settings = stack.settings()
    keys = Keys(settings.key_prefix)
    async with (
        aiohttp.ClientSession(base_url=stack.api_url) as http,
        open_client(settings) as sqs,
    ):
        normal = await QueueOps.open(sqs, settings.queue_normal, 0)
        waiting = asyncio.create_task(http.get("/api/items/garbled"))
        received = []
        while not received:
            received = await normal.receive(1, 1)
        env = decode_request(received[0].body)
        await redis.set(keys.reply(env.id), b"\xc1 not msgpack", ex=60)
        # make the pod re-subscribe, so its recovery MGET meets the garbage
        await kill_clients(redis, keys.subscriber_name(settings.pod_id))
        await asyncio.sleep(0.5)
        async with http.get(stack.api_readyz_url) as resp:
            assert resp.status == 200
        assert not waiting.done()
        good = Reply(id=env.id, status=200, headers=[], body=b"fine")
        await redis.publish(env.reply_to, encode_reply(good))
        resp = await asyncio.wait_for(waiting, 5)
        assert resp.status == 200 and await resp.read() == b"fine"
        await normal.close()
    bad = await metric(stack.api_metrics_url, "queuefront_replies_total", outcome="undecodable")
    assert bad == 1


async def test_bad_gateway_answers_name_no_backend_address(stack: Stack) -> None:
    dead_port = free_port()
    await stack.start_api()
    await stack.start_worker(QF_BACKEND_URL=f"http://127.0.0.1:{dead_port}")
    async with (
        aiohttp.ClientSession(base_url=stack.api_url) as http,
        http.get("/api/items/nowhere") as resp,
    ):
        assert resp.status == 502
        text = await resp.text()
    assert str(dead_port) not in text and "127.0.0.1" not in text, text
