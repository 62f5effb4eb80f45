"""Votes straight from API Gateway (deploy/terraform ``ingest_direct``), through the emulator.

The messages are posted to the emulator exactly as API Gateway's SQS integration posts
them: SQS's query protocol (``Action=SendMessage``, form-encoded), the body as the message,
the route, request id, request time and path parameters as ``MessageAttribute.N.*`` —
the form the edge module's request template writes (its suite asserts the template; the
attribute names are checked against it below). The one addition is ``QueueUrl``: API
Gateway names the queue in the request's path, which the emulator does not read.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import asyncpg
import msgspec
import pytest

from devstack import Stack, eventually, metric
from queuefront.sqs import QueueOps, open_client, queue_url
from tests.integration.test_ingest import WRITER_FAST, api_tally, db_rows, send_raw
from tests.terraform.tfmodel import MODULES_DIR
from workers.writer import direct

EDGE_SUITE = MODULES_DIR / "edge" / "tests" / "edge.tftest.hcl"


def template_attributes(
    *, route: str, request_id: str, epoch_ms: int, path: dict[str, str]
) -> list[tuple[str, str, str]]:
    """The (name, data type, value) attributes in the template's order."""
    return [
        ("route", "String", route),
        ("request_id", "String", request_id),
        ("received_at_ms", "Number", str(epoch_ms)),
        *((f"path.{k}", "String", v) for k, v in path.items()),
    ]


def form_body(body: str, attributes: list[tuple[str, str, str]]) -> str:
    """What API Gateway's template renders: $util.urlEncode of each value, like Java's
    URLEncoder (spaces as +), joined with &."""
    parts = ["Action=SendMessage", f"MessageBody={quote_plus(body)}"]
    for i, (name, kind, value) in enumerate(attributes, start=1):
        parts += [
            f"MessageAttribute.{i}.Name={name}",
            f"MessageAttribute.{i}.Value.DataType={kind}",
            f"MessageAttribute.{i}.Value.StringValue={quote_plus(value)}",
        ]
    return "&".join(parts)


async def post_like_api_gateway(stack: Stack, body: str, **attrs: Any) -> None:
    settings = stack.settings()
    async with open_client(settings) as sqs:
        url = await queue_url(sqs, settings.queue_ingest)
    form = form_body(body, template_attributes(**attrs)) + f"&QueueUrl={quote_plus(url)}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            settings.sqs_endpoint_url,
            data=form.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as resp,
    ):
        text = await resp.text()
        assert resp.status == 200, text
        assert "<MessageId>" in text, text


def vote_attrs(poll: str, request_id: str | None = None) -> dict[str, Any]:
    return {
        "route": "vote",
        "request_id": request_id or f"{uuid.uuid4()}",
        "epoch_ms": int(time.time() * 1000),
        "path": {"poll_id": poll},
    }


async def dead_letters(stack: Stack, count: int) -> list[direct.DeadDirect]:
    """Receives (and deletes) ``count`` messages from the ingest DLQ."""
    settings = stack.settings()
    found: list[direct.DeadDirect] = []
    deadline = time.monotonic() + 15
    async with open_client(settings) as sqs:
        dlq = await QueueOps.open(sqs, settings.dlq_name(settings.queue_ingest), 0)
        while len(found) < count and time.monotonic() < deadline:
            for m in await dlq.receive(10, 1):
                found.append(msgspec.json.decode(m.body, type=direct.DeadDirect))
                await dlq.delete(m.receipt_handle)
        await dlq.close()
    return found


def test_the_form_is_the_edge_modules_template() -> None:
    """The attribute names and order of the test's form are the ones the edge suite
    asserts for API Gateway's request template, so the writer is tested on that shape."""
    template = EDGE_SUITE.read_text()
    names = re.findall(r"MessageAttribute\.(\d+)\.Name=([a-z_.]+)", template)
    assert names, "the edge suite no longer asserts the request template"
    ours = template_attributes(**vote_attrs("p"))
    assert names == [(str(i), a[0]) for i, a in enumerate(ours, 1)]
    kinds = re.findall(r"MessageAttribute\.\d+\.Value\.DataType=(\w+)", template)
    assert kinds == [a[1] for a in ours]
    assert "MessageBody=$util.urlEncode($input.body)" in template


async def test_votes_from_api_gateway_are_stored_once_and_tallied(db_stack: Stack) -> None:
    stack = db_stack
    await stack.start_api()
    writer = await stack.start_writer(**WRITER_FAST)
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    repeated = f"{uuid.uuid4()}"
    votes: list[tuple[str, str | None]] = [
        ('{"choice": 1, "voter": "a b"}', None),
        ('{"choice":2,"voter":"c&d=é"}', None),
    ]
    votes += [('{"choice": 3, "voter": "e"}', repeated)] * 2  # one request delivered twice
    for body, request_id in votes:
        await post_like_api_gateway(stack, body, **vote_attrs(poll, request_id))

    async def stored() -> bool:
        return await db_rows(stack, poll) == 3

    await eventually(stored, 15, "three distinct requests stored")

    async def duplicate_seen() -> bool:
        return await metric(writer.metrics_url, "queuefront_ingest_duplicates_total") >= 1

    await eventually(duplicate_seen, 10, "the repeated request seen as a duplicate")
    assert await db_rows(stack, poll) == 3
    async with aiohttp.ClientSession() as http:
        assert await api_tally(http, stack, poll) == {1: 1, 2: 1, 3: 1}
    assert await metric(writer.metrics_url, "queuefront_ingest_refused_total") == 0


@pytest.mark.parametrize(
    ("body", "attrs", "reason", "detail"),
    [
        ('{"choice": 100, "voter": "a"}', {}, "invalid", "choice: 100 is out of range"),
        ('{"choice": 1, "voter": "a", "extra": 1}', {}, "invalid", "unknown fields: extra"),
        ('{"choice": 1, "voter": ', {}, "invalid", "not a JSON object"),
        ('{"choice": 1, "voter": "a"}', {"route": "nope"}, "unknown_route", "nope"),
        ('{"choice": 1, "voter": "a"}', {"path": {}}, "malformed", "poll_id"),
    ],
    ids=["out-of-range", "unknown-field", "bad-json", "unknown-route", "no-path-param"],
)
async def test_a_bad_vote_is_refused_to_the_dlq_with_its_reason(
    db_stack: Stack, body: str, attrs: dict[str, Any], reason: str, detail: str
) -> None:
    stack = db_stack
    writer = await stack.start_writer(**WRITER_FAST)
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    good = vote_attrs(poll)
    bad = {**vote_attrs(poll), **attrs}
    await post_like_api_gateway(stack, body, **bad)
    await post_like_api_gateway(stack, '{"choice": 4, "voter": "ok"}', **good)

    (dead,) = await dead_letters(stack, 1)
    assert dead.refused.startswith(f"{reason}: ") and detail in dead.refused, dead.refused
    assert dead.body == body  # the body as the client sent it
    assert dead.direct["request_id"] == bad["request_id"]
    assert dead.direct["path"] == bad["path"]
    labels = {"reason": reason}
    assert await metric(writer.metrics_url, "queuefront_ingest_refused_total", **labels) == 1

    async def good_stored() -> bool:
        return await db_rows(stack, poll) == 1

    await eventually(good_stored, 10, "the good vote next to it stored")
    settings = stack.settings()
    async with open_client(settings) as sqs:  # refused at once: not back on the queue
        ingest = await QueueOps.open(sqs, settings.queue_ingest, 0)
        left = await ingest.attributes("ApproximateNumberOfMessages")
        assert int(left["ApproximateNumberOfMessages"]) == 0
        await ingest.close()


async def test_a_dead_letter_sent_back_is_validated_again(db_stack: Stack) -> None:
    """`queuefront admin redrive` moves bodies only: the DLQ body carries what the
    attributes said, so a refused vote sent back after the route table was fixed is
    stored, under the id of its API Gateway request."""
    stack = db_stack
    await stack.start_writer(**WRITER_FAST)
    poll = f"poll-{uuid.uuid4().hex[:8]}"
    request_id = f"{uuid.uuid4()}"
    attributes = {
        "route": "vote",
        "request_id": request_id,
        "received_at_ms": str(int(time.time() * 1000)),
        "path.poll_id": poll,
    }
    body = direct.dead_letter_body(attributes, '{"choice": 5, "voter": "v"}', "invalid: …")
    await send_raw(stack, [body, body])

    async def stored() -> bool:
        return await db_rows(stack, poll) == 1

    await eventually(stored, 15, "the redriven vote stored once")
    conn = await asyncpg.connect(stack.env["QF_DATABASE_URL"])
    try:
        row = await conn.fetchrow("SELECT id::text, choice FROM votes WHERE poll_id = $1", poll)
    finally:
        await conn.close()
    assert row is not None and row["id"] == direct.item_id(request_id) and row["choice"] == 5
