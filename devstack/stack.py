"""One test's (or benchmark run's) slice of the system: its queues, key prefix, processes.

Every ``Stack`` gets its own queue names and Redis key prefix, so runs do not see each
other's messages, the suite can run twice in a row, and it can run while ``make run`` or
another suite uses the same Redis and emulator.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devstack.processes import ROOT, Proc, free_port, spawn, wait_http
from queuefront.settings import Settings
from queuefront.sqs import QueueOps, open_client


@dataclass
class Stack:
    """One test's slice of the system: its queues, its key prefix, its processes."""

    env: dict[str, str]
    log_dir: Path
    procs: list[Proc] = field(default_factory=list)
    api_port: int = 0
    api_probe_port: int = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def settings_env(self, **overrides: str) -> dict[str, str]:
        return {**self.env, **overrides}

    async def in_flight(self, queue: str = "normal") -> int:
        """Messages of one of the stack's queues received and not yet deleted (SQS's
        ``ApproximateNumberOfMessagesNotVisible``): what a worker holds, or left held."""
        settings = self.settings()
        names = {"high": settings.queue_high, "normal": settings.queue_normal}
        async with open_client(settings) as sqs:
            ops = await QueueOps.open(sqs, names[queue], 0)
            try:
                attrs = await ops.attributes("ApproximateNumberOfMessagesNotVisible")
            finally:
                await ops.close()
        return int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def settings(self) -> Settings:
        """The settings the stack's processes read, for the test's own clients."""
        fields = {k[3:].lower(): v for k, v in self.env.items() if k.startswith("QF_")}
        return Settings(**fields)  # type: ignore[arg-type]

    @property
    def api_metrics_url(self) -> str:
        """``/metrics`` of the api started last (on its probe port)."""
        return f"http://127.0.0.1:{self.api_probe_port}/metrics"

    @property
    def api_readyz_url(self) -> str:
        return f"http://127.0.0.1:{self.api_probe_port}/readyz"

    async def start_api(self, **overrides: str) -> Proc:
        self.api_port, self.api_probe_port = free_port(), free_port()
        env = self.settings_env(
            **{
                "QF_HTTP_PORT": str(self.api_port),
                "QF_METRICS_PORT": str(self.api_probe_port),
                **overrides,
            }
        )
        proc = spawn("api", [sys.executable, "-m", "service"], env, self.log_dir)
        proc.port = self.api_probe_port
        self.procs.append(proc)
        await wait_http(self.api_readyz_url, proc=proc)
        return proc

    async def start_worker(self, **overrides: str) -> Proc:
        return await self._start_consumer("worker", "workers.priority", overrides)

    async def start_writer(self, **overrides: str) -> Proc:
        return await self._start_consumer("writer", "workers.writer", overrides)

    async def _start_consumer(self, name: str, module: str, overrides: dict[str, str]) -> Proc:
        port = free_port()
        env = self.settings_env(**{"QF_METRICS_PORT": str(port), **overrides})
        proc = spawn(name, [sys.executable, "-m", module], env, self.log_dir)
        proc.port = port
        self.procs.append(proc)
        await wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
        return proc

    async def run_module(self, module: str, *args: str) -> tuple[int, str]:
        """Runs ``python -m module args`` with the stack's settings; (exit code, output)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return int(proc.returncode or 0), out.decode(errors="replace")

    def stop_all(self, timeout_s: float = 10.0) -> None:
        """SIGTERM to every process at once, so their drains overlap; SIGKILL to what is
        still running after ``timeout_s``."""
        running = [p for p in self.procs if p.popen.poll() is None]
        for proc in running:
            proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in running:
            proc.stop(max(0.1, deadline - time.monotonic()))


def new_stack_env(base: Mapping[str, str]) -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {
        # no credentials unless a test passes them (which are then enforced)
        "QF_AUTH_DISABLED": "true",
        # the tests and benchmarks send thousands of requests a second from 127.0.0.1:
        # the default per-address limit is off unless a run asks for it
        "QF_ANON_RATE_LIMIT_RPS": "0",
        **base,
        "QF_QUEUE_HIGH": f"qft-{tag}-high",
        "QF_QUEUE_NORMAL": f"qft-{tag}-normal",
        "QF_QUEUE_INGEST": f"qft-{tag}-ingest",
        "QF_KEY_PREFIX": f"qft:{tag}:",
        "QF_POD_ID": f"pod-{tag}",
        "QF_LOG_LEVEL": "DEBUG",
        # one api process, like `make run`: a test that wants several says so
        "QF_API_PROCESSES": "1",
    }
