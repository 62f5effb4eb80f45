"""Create the queues and their dead-letter queues if missing: ``python -m queuefront.queues``.

Used by ``make run``, the compose init service and the tests, so the emulator and real
SQS get their queues from the same code. On AWS, Terraform owns the queues and this
command is not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import botocore.exceptions

from queuefront.settings import Settings
from queuefront.sqs import SQSClient, open_client
from queuefront.telemetry import configure_logging, get_logger

DLQ_RETENTION_S = 14 * 24 * 3600
"""The longest SQS keeps a message: dead letters wait for an operator."""

log = get_logger(__name__)


async def ensure_queue(client: SQSClient, settings: Settings, name: str) -> str:
    """Creates ``name`` and its DLQ with a redrive policy; idempotent. Returns the queue URL."""
    dlq_url = (
        await client.create_queue(
            QueueName=settings.dlq_name(name),
            Attributes={
                "MessageRetentionPeriod": str(DLQ_RETENTION_S),
                # a dead letter is the message as it was: the DLQ must take what the queue took
                "MaximumMessageSize": str(settings.max_message_bytes),
            },
        )
    )["QueueUrl"]
    dlq_arn = (await client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"]))[
        "Attributes"
    ]["QueueArn"]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": settings.max_receive_count}
    attrs: dict[Any, str] = {
        "VisibilityTimeout": str(settings.visibility_timeout_s),
        "MaximumMessageSize": str(settings.max_message_bytes),
        "RedrivePolicy": json.dumps(redrive),
    }
    try:
        url = (await client.create_queue(QueueName=name, Attributes=attrs))["QueueUrl"]
    except botocore.exceptions.ClientError as exc:
        if "QueueAlreadyExists" not in str(exc) and "QueueNameExists" not in str(exc):
            raise
        # exists with other attributes: bring it to the wanted ones
        url = (await client.get_queue_url(QueueName=name))["QueueUrl"]
        await client.set_queue_attributes(QueueUrl=url, Attributes=attrs)
    return url


async def ensure_queues(settings: Settings, *, wait_s: float = 0.0) -> dict[str, str]:
    names = [settings.queue_high, settings.queue_normal, settings.queue_ingest]
    deadline = time.monotonic() + wait_s
    async with open_client(settings) as client:
        while True:
            try:
                urls = {n: await ensure_queue(client, settings, n) for n in names}
                break
            except (botocore.exceptions.EndpointConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    for name, url in urls.items():
        log.info("queue ready", queue=name, url=url, dlq=settings.dlq_name(name))
    return urls


async def delete_queues(settings: Settings) -> None:
    """Removes the queues and DLQs (tests clean up with it)."""
    names = [settings.queue_high, settings.queue_normal, settings.queue_ingest]
    async with open_client(settings) as client:
        for name in names + [settings.dlq_name(n) for n in names]:
            try:
                url = (await client.get_queue_url(QueueName=name))["QueueUrl"]
                await client.delete_queue(QueueUrl=url)
            except botocore.exceptions.ClientError:
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--wait-s", type=float, default=30.0, help="how long to wait for the SQS endpoint"
    )
    args = parser.parse_args()
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(ensure_queues(settings, wait_s=args.wait_s))


if __name__ == "__main__":
    main()
