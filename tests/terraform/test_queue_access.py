"""The queues each process opens, derived from the code, against its task role.

Each process's start-up runs for real (service.app's SQS context, workers.priority.run and
workers.writer up to their serve loop, with the DLQ-depth gauge's first reading, and
queuefront.admin's redrive) against a client that records every SQS call and the queue it
names. The set of queues each process touches must be exactly the queues and DLQs that
deploy/terraform's compute module grants its task role (``local.queue_access``), and every
call must be among the actions granted on that queue. A process that opens one more queue
(the DLQ-depth gauge did) fails here before it crash-loops on AccessDenied in AWS.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from queuefront import metrics
from queuefront.consumer import watch_depth
from queuefront.settings import Settings
from tests.terraform.tfmodel import MODULES_DIR, load_module, unquote

QUEUES = {"high": "t-high", "normal": "t-normal", "ingest": "t-ingest"}
DLQ_SUFFIX = "-dlq"
URL_PREFIX = "https://sqs.example.test/123456789012/"

# boto operation -> IAM action
ACTIONS = {
    "get_queue_url": "sqs:GetQueueUrl",
    "get_queue_attributes": "sqs:GetQueueAttributes",
    "receive_message": "sqs:ReceiveMessage",
    "send_message": "sqs:SendMessage",
    "send_message_batch": "sqs:SendMessage",
    "delete_message": "sqs:DeleteMessage",
    "delete_message_batch": "sqs:DeleteMessage",
    "change_message_visibility": "sqs:ChangeMessageVisibility",
    "change_message_visibility_batch": "sqs:ChangeMessageVisibility",
}


def settings() -> Settings:
    return Settings(
        queue_high=QUEUES["high"],
        queue_normal=QUEUES["normal"],
        queue_ingest=QUEUES["ingest"],
        dlq_suffix=DLQ_SUFFIX,
        sqs_endpoint_url="http://127.0.0.1:1",  # never reached: the client is the recorder
        routes_file="config/routes.toml",
        redis_url="redis://127.0.0.1:1/0",  # never connected: start-up does not use Redis
    )


def queue_key(name: str) -> str:
    """t-high -> high, t-high-dlq -> high-dlq."""
    for key, queue in QUEUES.items():
        if name == queue:
            return key
        if name == queue + DLQ_SUFFIX:
            return f"{key}-dlq"
    raise AssertionError(f"a queue no setting names: {name}")


class RecordingSQS:
    """Answers like an empty SQS and records (action, queue key) of every call."""

    def __init__(self) -> None:
        self.calls: set[tuple[str, str]] = set()

    def _record(self, operation: str, name: str) -> None:
        self.calls.add((ACTIONS[operation], queue_key(name)))

    def __getattr__(self, operation: str) -> Callable[..., Awaitable[dict[str, Any]]]:
        if operation not in ACTIONS:
            raise AttributeError(operation)

        async def call(**kwargs: Any) -> dict[str, Any]:
            if operation == "get_queue_url":
                self._record(operation, kwargs["QueueName"])
                return {"QueueUrl": URL_PREFIX + kwargs["QueueName"]}
            self._record(operation, str(kwargs["QueueUrl"]).removeprefix(URL_PREFIX))
            if operation == "get_queue_attributes":
                return {
                    "Attributes": {"VisibilityTimeout": "30", "ApproximateNumberOfMessages": "0"}
                }
            if operation == "receive_message":
                return {"Messages": []}
            return {"Successful": [], "Failed": []}

        return call

    def patch(self, monkeypatch: pytest.MonkeyPatch, module: str) -> None:
        @asynccontextmanager
        async def open_client(*args: Any, **kwargs: Any) -> AsyncIterator[RecordingSQS]:
            yield self

        monkeypatch.setattr(f"{module}.open_client", open_client)

    def queues(self) -> set[str]:
        return {q for _, q in self.calls}


async def _serve_once(
    consumer: Any, *, settings: Settings, redis: Any, dlqs: list[Any], **_: Any
) -> None:
    """serve() up to the DLQ-depth gauge's first reading, without the receive loops."""
    depth = asyncio.create_task(watch_depth(dlqs, metrics.DLQ_DEPTH, 60))
    await asyncio.sleep(0.05)
    depth.cancel()
    await asyncio.gather(depth, return_exceptions=True)


async def run_api(monkeypatch: pytest.MonkeyPatch, sqs: RecordingSQS) -> None:
    from aiohttp import web

    from queuefront.keys import Keys
    from queuefront.redis import open_redis
    from queuefront.routes import load_routes
    from service import app as service_app
    from service.context import KEYS, REDIS, ROUTES, SETTINGS

    sqs.patch(monkeypatch, "service.app")
    app = web.Application()
    app[SETTINGS] = settings()
    app[ROUTES] = load_routes(app[SETTINGS].routes_file)
    app[KEYS] = Keys(app[SETTINGS].key_prefix)
    app[REDIS] = open_redis(app[SETTINGS])  # admission reads the workers' drain reports
    try:
        ctx = service_app.sqs_ctx(app)
        await anext(ctx)
        await anext(ctx, None)
    finally:
        await app[REDIS].aclose()


async def run_worker(monkeypatch: pytest.MonkeyPatch, sqs: RecordingSQS) -> None:
    from workers.priority import run as priority

    sqs.patch(monkeypatch, "workers.priority.run")
    monkeypatch.setattr(priority, "serve", _serve_once)
    await priority.main_async(settings())


async def run_writer(monkeypatch: pytest.MonkeyPatch, sqs: RecordingSQS) -> None:
    from workers.writer import run as writer

    class Pool:
        async def close(self) -> None:
            return None

    async def create_pool(*args: Any, **kwargs: Any) -> Pool:
        return Pool()

    async def no_database_check(*args: Any) -> None:
        return None

    sqs.patch(monkeypatch, "workers.writer.run")
    monkeypatch.setattr("asyncpg.create_pool", create_pool)
    monkeypatch.setattr(writer, "check_sinks", no_database_check)
    monkeypatch.setattr(writer, "serve", _serve_once)
    await writer.main_async(settings())


async def run_admin(monkeypatch: pytest.MonkeyPatch, sqs: RecordingSQS) -> None:
    from queuefront import admin

    sqs.patch(monkeypatch, "queuefront.admin")
    for queue in QUEUES.values():
        await admin.redrive(settings(), queue)


STARTS = {"api": run_api, "worker": run_worker, "writer": run_writer, "admin": run_admin}


def granted() -> dict[str, dict[str, set[str]]]:
    """compute's local.queue_access, resolved: process -> queue key -> IAM actions."""
    loc = load_module(MODULES_DIR / "compute").locals
    actions = {use: {unquote(a) for a in acts} for use, acts in loc["sqs_actions"].items()}
    out: dict[str, dict[str, set[str]]] = {}
    for process, access in loc["queue_access"].items():
        table: dict[str, set[str]] = {}
        for kind, suffix in (("queues", ""), ("dlqs", "-dlq")):
            for use, keys in access[kind].items():
                for key in keys:
                    table.setdefault(unquote(key) + suffix, set()).update(actions[use])
        out[process] = table
    return out


@pytest.mark.parametrize("process", sorted(STARTS))
async def test_task_role_grants_exactly_the_queues_the_code_opens(
    process: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = RecordingSQS()
    await STARTS[process](monkeypatch, sqs)
    role = granted()[process]
    assert sqs.queues(), f"{process}: the start-up opened no queue (is the recorder patched in?)"
    assert sqs.queues() == set(role), (
        f"{process}: the code opens {sorted(sqs.queues())}, the task role grants {sorted(role)}"
    )
    denied = sorted((a, q) for a, q in sqs.calls if a not in role[q])
    assert not denied, f"{process}: calls its task role does not allow: {denied}"


def test_migrate_needs_no_queue() -> None:
    source = (MODULES_DIR.parents[2] / "queuefront" / "migrate.py").read_text()
    assert not re.search(r"\bsqs\b|open_client", source), "migrate started using SQS"
    assert granted()["migrate"] == {}


def test_every_process_with_a_role_is_exercised() -> None:
    assert set(granted()) == set(STARTS) | {"migrate"}
