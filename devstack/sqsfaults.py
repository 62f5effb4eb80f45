"""A stand-in for SQS that a test puts in front of the emulator: every call passes
through, except the ones the test asks it to break — the way real SQS breaks them.

Why: the emulator answers every call at once and accepts every body, so nothing ran
into what real SQS does — answer late (after it accepted the message), refuse one entry
of a batch, throttle, refuse a body with characters outside the XML character set
(``InvalidMessageContents``) or a batch over 1 MiB (``BatchRequestTooLong``). This
process applies those rules, with SQS's own error shapes, on the way to the emulator.

It speaks the protocol the project's clients speak: AWS JSON 1.0 (``X-Amz-Target:
AmazonSQS.<Operation>``), which both the lean data plane (``queuefront.sqswire``) and
aiobotocore use — SQS's botocore model lists only ``json``. A call in another protocol
(the old query/XML one) is passed through untouched, without rules. A rewritten request
(entries taken out) is forwarded unsigned-as-sent: the emulator checks no signatures.

Run: ``python -m devstack.sqsfaults --port P --upstream http://127.0.0.1:<emulator>``;
drive it with ``SQSFaults`` (``devstack.sqsfaults.SQSFaults``): ``configure`` posts the
rules to ``/__faults``, ``seen`` reads what it received and forwarded.

Rules (each a JSON object with one effect; ``operation`` "*" matches every operation;
``match``: only calls — for sends: only entries — whose message body contains that
text; ``skip``: the first that many matching calls (entries) pass untouched; ``times``:
then applies to that many, and is spent; absent: for ever):

- ``{"delay_s": 1.5}``: the answer comes that much later. By default the call is
  forwarded first (SQS has the message, the acknowledgement is late);
  ``"before": true`` delays it before it reaches the emulator.
- ``{"entry_error": {"code": "InternalError", "sender_fault": false}}``: the matching
  entries of a SendMessageBatch are not forwarded and come back in ``Failed``.
- ``{"error": "RequestThrottled" | "ThrottlingException" | {status, type, query_error,
  message}}``: the whole call is refused (nothing forwarded).
- ``{"cut": true}``: forwarded, then the connection is closed without an answer.
- ``{"hang": true}``: never answered (the client's read timeout ends it).

Besides the rules, always (unless configured off): the character rule (``characters``:
``reject`` — the entry fails with ``InvalidMessageContents``; ``replace`` — forbidden
characters become U+FFFD, as newer SQS documentation describes; ``off``), and the size
rule (``max_message_bytes``, default 1 MiB: a SendMessage over it fails with
``InvalidParameterValue``, a SendMessageBatch whose bodies total more with
``BatchRequestTooLong``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from devstack.processes import Proc, free_port, spawn, wait_http
from queuefront.limits import MAX_MESSAGE_BYTES

MAX_REQUEST_BYTES = 64 * 1_048_576
"""What this stand-in reads of one request (aiohttp's default, 1 MiB, is below a full
batch with its JSON wrapping)."""
HANG_S = 3600.0
"""How long a ``hang`` rule holds a call (the client gives up long before)."""
JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
TARGET_PREFIX = "AmazonSQS."
SEND_OPERATIONS = ("SendMessage", "SendMessageBatch")

FORBIDDEN = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters outside ``#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF``."""

THROTTLES: dict[str, dict[str, Any]] = {
    # SQS's own (its JSON errors carry the query-protocol code in x-amzn-query-error)
    "RequestThrottled": {
        "status": 400,
        "type": "com.amazonaws.sqs#RequestThrottled",
        "query_error": "RequestThrottled;Sender",
        "message": "Request is throttled.",
    },
    # the AWS front end's generic one
    "ThrottlingException": {
        "status": 400,
        "type": "com.amazon.coral.availability#ThrottlingException",
        "message": "Rate exceeded",
    },
}


@dataclass
class Rule:
    operation: str = "*"
    match: str | None = None
    skip: int = 0
    times: int | None = None
    delay_s: float = 0.0
    before: bool = False
    entry_error: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    cut: bool = False
    hang: bool = False

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Rule:
        error = raw.get("error")
        if isinstance(error, str):
            error = THROTTLES[error]
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "error": error})

    def applies(self, operation: str, texts: list[str]) -> bool:
        """Whether this call (entry) is one the rule applies to; counts it as seen."""
        if self.operation not in ("*", operation):
            return False
        if self.match is not None and not any(self.match in t for t in texts):
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        if self.times is None:
            return True
        if self.times <= 0:
            return False
        self.times -= 1
        return True


@dataclass
class Faults:
    """The stand-in's state: its rules and what it has seen."""

    rules: list[Rule] = field(default_factory=list)
    characters: str = "reject"
    max_message_bytes: int = MAX_MESSAGE_BYTES
    calls: Counter[str] = field(default_factory=Counter)
    received: list[str] = field(default_factory=list)
    """Message bodies of every send received (before any rule)."""
    forwarded: list[str] = field(default_factory=list)
    """Message bodies handed to the emulator (what SQS 'has')."""

    def configure(self, raw: dict[str, Any]) -> None:
        self.rules = [Rule.parse(r) for r in raw.get("rules", [])]
        self.characters = raw.get("characters", "reject")
        self.max_message_bytes = int(raw.get("max_message_bytes", MAX_MESSAGE_BYTES))

    def first(self, operation: str, texts: list[str], kind: str) -> Rule | None:
        for rule in self.rules:
            if getattr(rule, kind) and rule.applies(operation, texts):
                return rule
        return None


FAULTS = web.AppKey("faults", Faults)
UPSTREAM = web.AppKey("upstream", str)
HTTP = web.AppKey("http", aiohttp.ClientSession)


def error_response(status: int, type_: str, message: str, query_error: str = "") -> web.Response:
    headers = {"x-amzn-RequestId": str(uuid.uuid4())}
    if query_error:
        headers["x-amzn-query-error"] = query_error
    return web.Response(
        status=status,
        body=json.dumps({"__type": type_, "message": message}).encode(),
        content_type=JSON_CONTENT_TYPE,
        headers=headers,
    )


def _size(body: str) -> int:
    return len(body.encode("utf-8", "surrogatepass"))


def _invalid_characters(body: str) -> bool:
    return FORBIDDEN.search(body) is not None


class Refused(Exception):
    """A whole call refused by a rule of SQS's."""

    def __init__(self, response: web.Response) -> None:
        self.response = response


def _apply_send_rules(
    faults: Faults, operation: str, params: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The request to forward, and the entries that failed here (``Failed`` entries)."""
    if operation == "SendMessage":
        entries = [{"Id": "", "MessageBody": params.get("MessageBody", "")}]
    else:
        entries = list(params.get("Entries", []))
    bodies = [str(e.get("MessageBody", "")) for e in entries]
    faults.received.extend(bodies)
    limit = faults.max_message_bytes
    if operation == "SendMessageBatch" and sum(map(_size, bodies)) > limit:
        total = sum(map(_size, bodies))
        raise Refused(
            error_response(
                400,
                "com.amazonaws.sqs#BatchRequestTooLong",
                f"Batch requests cannot be longer than {limit} bytes. You have sent {total} bytes.",
                "AWS.SimpleQueueService.BatchRequestTooLong;Sender",
            )
        )
    failed: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for entry, body in zip(entries, bodies, strict=True):
        problem: tuple[str, str, bool] | None = None
        if operation == "SendMessage" and _size(body) > limit:
            raise Refused(
                error_response(
                    400,
                    "com.amazon.coral.service#InvalidParameterValueException",
                    "One or more parameters are invalid. Reason: Message must be shorter "
                    f"than {limit} bytes.",
                    "InvalidParameterValue;Sender",
                )
            )
        if _invalid_characters(body):
            if faults.characters == "reject":
                problem = (
                    "InvalidMessageContents",
                    "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD "
                    "| #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
                    True,
                )
            elif faults.characters == "replace":
                entry = {**entry, "MessageBody": FORBIDDEN.sub("\ufffd", body)}
        if problem is None:
            rule = faults.first(operation, [body], "entry_error")
            if rule is not None and rule.entry_error is not None:
                spec = rule.entry_error
                problem = (
                    str(spec.get("code", "InternalError")),
                    str(spec.get("message", "injected failure")),
                    bool(spec.get("sender_fault", False)),
                )
        if problem is None:
            kept.append(entry)
            continue
        if operation == "SendMessage":
            code, message, _ = problem
            raise Refused(
                error_response(400, f"com.amazonaws.sqs#{code}", message, f"{code};Sender")
            )
        code, message, sender = problem
        failed.append(
            {"Id": entry.get("Id"), "Code": code, "Message": message, "SenderFault": sender}
        )
    faults.forwarded.extend(str(e.get("MessageBody", "")) for e in kept)
    if operation == "SendMessage":
        return ({**params, "MessageBody": kept[0]["MessageBody"]} if kept else params), failed
    return {**params, "Entries": kept}, failed


async def handle(request: web.Request) -> web.StreamResponse:
    faults = request.app[FAULTS]
    raw = await request.read()
    target = request.headers.get("X-Amz-Target", "")
    if not target.startswith(TARGET_PREFIX):
        return await _forward(request, raw)  # not AWS JSON: passed through untouched
    operation = target[len(TARGET_PREFIX) :]
    faults.calls[operation] += 1
    params: dict[str, Any] = json.loads(raw) if raw else {}
    texts = [raw.decode("utf-8", "replace")]
    if operation in SEND_OPERATIONS:
        entries = params.get("Entries") or [params]
        texts = [str(e.get("MessageBody", "")) for e in entries]

    refused = faults.first(operation, texts, "error")
    if refused is not None and refused.error is not None:
        spec = refused.error
        return error_response(
            int(spec.get("status", 400)),
            str(spec.get("type", "com.amazonaws.sqs#InternalError")),
            str(spec.get("message", "injected error")),
            str(spec.get("query_error", "")),
        )
    if faults.first(operation, texts, "hang") is not None:
        await asyncio.sleep(HANG_S)
    delay = faults.first(operation, texts, "delay_s")
    if delay is not None and delay.before:
        await asyncio.sleep(delay.delay_s)

    failed: list[dict[str, Any]] = []
    if operation in SEND_OPERATIONS:
        try:
            params, failed = _apply_send_rules(faults, operation, params)
        except Refused as exc:
            return exc.response
        if operation == "SendMessageBatch" and not params["Entries"]:
            body = json.dumps({"Successful": [], "Failed": failed}).encode()
            answer = web.Response(body=body, content_type=JSON_CONTENT_TYPE)
            return await _answer(request, delay, answer)
        raw = json.dumps(params).encode()
    response = await _forward(request, raw)
    if failed and response.status == 200 and isinstance(response, web.Response):
        merged = json.loads(response.body or b"{}")  # type: ignore[arg-type]
        merged["Failed"] = [*merged.get("Failed", []), *failed]
        response.body = json.dumps(merged).encode()
    if faults.first(operation, texts, "cut") is not None:
        # SQS acted on the call, and the answer never arrives
        if request.transport is not None:
            request.transport.abort()
        return response
    return await _answer(request, delay, response)


async def _answer(request: web.Request, delay: Rule | None, response: web.Response) -> web.Response:
    if delay is not None and not delay.before:
        await asyncio.sleep(delay.delay_s)
    return response


async def _forward(request: web.Request, raw: bytes) -> web.Response:
    skip = {"host", "content-length", "transfer-encoding"}
    headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
    url = request.app[UPSTREAM] + request.path_qs
    async with request.app[HTTP].request(request.method, url, data=raw, headers=headers) as up:
        body = await up.read()
        keep = {"content-type", "x-amzn-requestid", "x-amzn-query-error"}
        out = {k: v for k, v in up.headers.items() if k.lower() in keep}
        return web.Response(status=up.status, body=body, headers=out)


async def configure(request: web.Request) -> web.Response:
    request.app[FAULTS].configure(await request.json())
    return web.json_response({"ok": True})


async def seen(request: web.Request) -> web.Response:
    """What was received and forwarded; ``?match=`` counts the message bodies holding it."""
    faults = request.app[FAULTS]
    match = request.query.get("match", "")
    return web.json_response(
        {
            "calls": dict(faults.calls),
            "received": sum(match in b for b in faults.received),
            "forwarded": sum(match in b for b in faults.forwarded),
        }
    )


def make_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[FAULTS] = Faults()
    app[UPSTREAM] = upstream.rstrip("/")

    async def http_ctx(app: web.Application) -> Any:
        async with aiohttp.ClientSession(auto_decompress=False) as http:
            app[HTTP] = http
            yield

    app.cleanup_ctx.append(http_ctx)
    app.router.add_post("/__faults", configure)
    app.router.add_get("/__faults", seen)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


class SQSFaults:
    """The test's handle on a running stand-in."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def configure(
        self,
        *rules: dict[str, Any],
        characters: str = "reject",
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        config = {
            "rules": list(rules),
            "characters": characters,
            "max_message_bytes": max_message_bytes,
        }
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.url}/__faults", json=config) as resp,
        ):
            resp.raise_for_status()

    async def seen(self, match: str = "") -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/__faults", params={"match": match}) as resp,
        ):
            resp.raise_for_status()
            result: dict[str, Any] = await resp.json()
            return result


async def start_sqs_faults(log_dir: Path, upstream: str) -> tuple[SQSFaults, Proc]:
    """The stand-in on a free port in front of ``upstream`` (the emulator's URL)."""
    port = free_port()
    args = [sys.executable, "-m", "devstack.sqsfaults", "--port", str(port), "--upstream", upstream]
    proc = spawn("sqsfaults", args, {}, log_dir)
    proc.port = port
    url = f"http://127.0.0.1:{port}"
    await wait_http(f"{url}/__faults", proc=proc)
    return SQSFaults(url), proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the emulator's URL")
    args = parser.parse_args()
    web.run_app(make_app(args.upstream), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
