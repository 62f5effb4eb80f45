"""The contract's process entry points (DESIGN.md's process table) start, as written there.

``python -m service``, ``python -m workers.priority`` and ``python -m workers.ingest`` are
what an operator of the contract types: each must start the process it names and answer
``/healthz`` on its probe port (``QF_METRICS_PORT``). The devstack starts the writer as
``workers.writer``, so without this test the contract's name for it would go unexercised.
"""

from __future__ import annotations

import sys

import pytest

from devstack import Stack, eventually, free_port, spawn, wait_http

STARTED_LINE_TIMEOUT_S = 10.0

CONTRACT_ENTRY_POINTS = {
    "service": "api configured",
    "workers.priority": "worker started",
    "workers.ingest": "writer started",
}
"""Entry point -> the log line that says which process it started."""


@pytest.mark.parametrize("module", sorted(CONTRACT_ENTRY_POINTS))
async def test_each_contract_entry_point_starts_its_process_and_answers_health(
    db_stack: Stack, module: str
) -> None:
    probe_port = free_port()
    env = db_stack.settings_env(QF_METRICS_PORT=str(probe_port), QF_HTTP_PORT=str(free_port()))
    proc = spawn(module, [sys.executable, "-m", module], env, db_stack.log_dir)
    db_stack.procs.append(proc)  # stopped with the stack
    await wait_http(f"http://127.0.0.1:{probe_port}/healthz", proc=proc)
    line = CONTRACT_ENTRY_POINTS[module]

    async def said_it() -> bool:
        return line in proc.log()

    await eventually(said_it, STARTED_LINE_TIMEOUT_S, f"{module} logs {line!r}")
