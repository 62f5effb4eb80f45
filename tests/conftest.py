"""Shared fixtures: the SQS emulator, the demo backend, Redis, and one ``Stack`` per test.

The emulator and the demo backend are started once per session on free ports (so a
``make run`` on the default ports is never disturbed) and stopped at the end.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from devstack import Stack, new_stack_env, start_backend, start_emulator
from queuefront.migrate import migrate
from queuefront.queues import delete_queues, ensure_queues

REDIS_URL = os.environ.get("QF_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("QF_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def sqs_endpoint(log_dir: Path) -> Iterator[str]:
    url, proc = asyncio.run(start_emulator(log_dir))
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def backend_url(log_dir: Path) -> Iterator[str]:
    url, proc = asyncio.run(
        start_backend(log_dir, QF_DEMO_LATENCY_MS="20", QF_DEMO_CONCURRENCY="64")
    )
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def base_env(sqs_endpoint: str, backend_url: str) -> dict[str, str]:
    return {
        "QF_SQS_ENDPOINT_URL": sqs_endpoint,
        "QF_REDIS_URL": REDIS_URL,
        "QF_BACKEND_URL": backend_url,
        "QF_ROUTES_FILE": str(Path(__file__).parent / "routes.toml"),
        "QF_RECEIVE_WAIT_S": "2",
        "QF_SEND_LINGER_MS": "2",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def db_stack(stack: Stack) -> AsyncIterator[Stack]:
    """A stack with a database of its own, migrated."""
    name = "qft_" + stack.env["QF_KEY_PREFIX"].split(":")[1]
    url = f"{PG_URL}/{name}"
    await migrate(url)
    stack.env["QF_DATABASE_URL"] = url
    try:
        yield stack
    finally:
        stack.stop_all()
        conn = await asyncpg.connect(f"{PG_URL}/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
async def stack(base_env: dict[str, str], log_dir: Path, redis: Redis) -> AsyncIterator[Stack]:
    s = Stack(env=new_stack_env(base_env), log_dir=log_dir)
    settings = s.settings()
    await ensure_queues(settings, wait_s=10)
    try:
        yield s
    finally:
        s.stop_all()
        await delete_queues(settings)
        keys = [k async for k in redis.scan_iter(match=f"{settings.key_prefix}*", count=1000)]
        if keys:
            await redis.delete(*keys)
