"""The reply path survives a lost pub/sub connection: nothing waits in vain."""

from __future__ import annotations

import asyncio

import aiohttp
from redis.asyncio import Redis

from devstack import Stack, kill_clients, metric
from queuefront.envelope import Reply, decode_request, encode_reply
from queuefront.keys import Keys
from queuefront.sqs import QueueOps, open_client


async def test_replies_stored_while_unsubscribed_are_recovered(stack: Stack, redis: Redis) -> None:
    """Deterministic: the replies are stored but never published (as if published while
    the pod was not subscribed); killing the subscription makes the pod re-subscribe,
    and its MGET of the pending ids must deliver them."""
    await stack.start_api()
    settings = stack.settings()
    keys = Keys(settings.key_prefix)
    async with (
        aiohttp.ClientSession(base_url=stack.api_url) as http,
        open_client(settings) as sqs,
    ):
        normal = await QueueOps.open(sqs, settings.queue_normal, 0)
        waiting = [asyncio.create_task(http.get(f"/api/items/{i}")) for i in range(5)]
        envelopes = []
        while len(envelopes) < 5:
            for message in await normal.receive(10, 1):
                envelopes.append(decode_request(message.body))
        for env in envelopes:
            reply = Reply(id=env.id, status=200, headers=[], body=env.path.encode())
            await redis.set(keys.reply(env.id), encode_reply(reply), ex=60)
        await asyncio.sleep(0.2)
        assert not any(t.done() for t in waiting)  # nothing was published

        assert await kill_clients(redis, keys.subscriber_name(settings.pod_id)) == 1
        responses = await asyncio.wait_for(asyncio.gather(*waiting), 5)
        bodies = sorted([(await r.read()).decode() for r in responses])
        assert [r.status for r in responses] == [200] * 5
        assert bodies == [f"/items/{i}" for i in range(5)]
    recovered = await metric(stack.api_metrics_url, "queuefront_replies_recovered_total")
    assert recovered == 5
    subscribes = await metric(stack.api_metrics_url, "queuefront_pubsub_subscribes_total")
    assert subscribes >= 2


async def test_client_kill_during_traffic_loses_no_reply(stack: Stack, redis: Redis) -> None:
    """With the real worker: the subscriber is killed repeatedly while 40 requests wait."""
    await stack.start_api()
    await stack.start_worker()
    settings = stack.settings()
    name = Keys(settings.key_prefix).subscriber_name(settings.pod_id)
    async with aiohttp.ClientSession(base_url=stack.api_url) as http:

        async def call(i: int) -> int:
            delay = str(300 + 20 * i)
            async with http.get(f"/api/items/{i}", headers={"X-Demo-Delay-Ms": delay}) as resp:
                return resp.status

        calls = [asyncio.create_task(call(i)) for i in range(40)]
        kills = 0
        for _ in range(60):
            kills += await kill_clients(redis, name)
            await asyncio.sleep(0.02)
        statuses = await asyncio.wait_for(asyncio.gather(*calls), 15)
    assert kills >= 2
    assert statuses == [200] * 40
