"""The OpenAPI description, and a fuzzer holding the real stack to it.

schemathesis generates requests from ``/openapi.json`` (valid ones, boundary cases and
invalid ones) and sends them to the api of a full stack — api, worker, writer, the demo
backend, Redis, Postgres and the SQS emulator — with config/routes.toml, as
``make run`` serves it. Any 5xx, or any answer the document does not describe (status,
content type, headers, body schema), fails the run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import aiohttp

from devstack import ROOT, Stack

ROUTES_FILE = str(ROOT / "config" / "routes.toml")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
MAX_EXAMPLES = 12
"""Generated cases per operation in the coverage phase."""
MAX_TIME_S = 12
"""The fuzzing phase repeats until this budget is spent (12 s: the whole CI must stay
within 20 minutes; the examples and coverage phases run in full either way)."""
SEED = os.environ.get("QF_FUZZ_SEED", "20261123")
"""Fixed by default so CI is reproducible; set QF_FUZZ_SEED to explore other cases."""


def schemathesis_cli() -> str:
    found = shutil.which("st") or str(Path(sys.executable).parent / "st")
    assert Path(found).exists(), "schemathesis is a dev dependency: make test installs it"
    return found


async def test_the_document_describes_the_route_table(stack: Stack) -> None:
    await stack.start_api(QF_ROUTES_FILE=ROUTES_FILE)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{stack.api_url}/openapi.json") as resp,
    ):
        assert resp.status == 200
        doc = await resp.json()
    assert doc["openapi"] == "3.1.0"
    ops = {
        op["operationId"]: (path, method)
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }
    assert ops["vote"] == ("/api/polls/{poll_id}/votes", "post")
    assert ops["item"] == ("/api/items/{item_id}", "get")
    assert ops["invalidate_data"] == ("/api/cache/invalidate", "post")
    vote_body = doc["paths"]["/api/polls/{poll_id}/votes"]["post"]["requestBody"]
    schema = vote_body["content"]["application/json"]["schema"]
    assert schema["required"] == ["choice", "voter"]
    assert schema["properties"]["choice"]["maximum"] == 99
    assert schema["additionalProperties"] is False


async def test_fuzzing_finds_no_5xx_and_no_schema_violation(
    db_stack: Stack, tmp_path: Path
) -> None:
    stack = db_stack
    auth = {"QF_AUTH_API_KEYS": "fuzz-key", "QF_AUTH_INVALIDATE_KEYS": "fuzz-key"}
    await stack.start_api(QF_ROUTES_FILE=ROUTES_FILE, **auth)
    await stack.start_worker(QF_ROUTES_FILE=ROUTES_FILE)
    await stack.start_writer(QF_ROUTES_FILE=ROUTES_FILE, QF_BATCH_MAX_WAIT_S="0.3")
    proc = await asyncio.create_subprocess_exec(
        schemathesis_cli(),
        "run",
        f"{stack.api_url}/openapi.json",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(MAX_TIME_S),
        "--seed",
        SEED,
        # one worker: with several, hypothesis describes its strategies from several
        # threads at once and now and then fails inside itself (seen 1 run in 3)
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--header",
        "X-Api-Key: fuzz-key",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), MAX_TIME_S + 120)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-12000:]
    assert "No issues found" in text or "passed" in text, text[-4000:]
