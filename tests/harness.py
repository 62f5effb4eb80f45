"""Start and stop the real processes the integration tests talk to.

Every test gets its own queue names and Redis key prefix (see ``Stack``), so tests do
not see each other's messages, the suite can run twice in a row, and it can run while
``make run`` or another suite uses the same Redis and emulator.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from queuefront.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SQS_DIR = ROOT / "deploy" / "local" / "sqs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


@dataclass
class Proc:
    """A subprocess with its log file; ``stop`` sends SIGTERM and waits."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0
    """The HTTP port it serves (api) or its probe/metrics port (worker)."""

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return int(self.popen.returncode)


def spawn(name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
    return Proc(name, popen, log_path)


async def wait_http(url: str, timeout_s: float = 20.0, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc is not None and proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited:\n{proc.log()[-3000:]}")
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    tail = proc.log()[-3000:] if proc else ""
    raise TimeoutError(f"{url} not ready after {timeout_s}s\n{tail}")


@dataclass
class Stack:
    """One test's slice of the system: its queues, its key prefix, its processes."""

    env: dict[str, str]
    log_dir: Path
    procs: list[Proc] = field(default_factory=list)
    api_port: int = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def settings_env(self, **overrides: str) -> dict[str, str]:
        return {**self.env, **overrides}

    def settings(self) -> Settings:
        """The settings the stack's processes read, for the test's own clients."""
        fields = {k[3:].lower(): v for k, v in self.env.items() if k.startswith("QF_")}
        return Settings(**fields)  # type: ignore[arg-type]

    async def start_api(self, **overrides: str) -> Proc:
        self.api_port = free_port()
        env = self.settings_env(QF_HTTP_PORT=str(self.api_port), **overrides)
        proc = spawn("api", [sys.executable, "-m", "service"], env, self.log_dir)
        proc.port = self.api_port
        self.procs.append(proc)
        await wait_http(f"{self.api_url}/readyz", proc=proc)
        return proc

    async def start_worker(self, **overrides: str) -> Proc:
        return await self._start_consumer("worker", "workers.priority", overrides)

    async def start_writer(self, **overrides: str) -> Proc:
        return await self._start_consumer("writer", "workers.ingest", overrides)

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

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(10)


def new_stack_env(base: Mapping[str, str]) -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {
        **base,
        "QF_QUEUE_HIGH": f"qft-{tag}-high",
        "QF_QUEUE_NORMAL": f"qft-{tag}-normal",
        "QF_QUEUE_INGEST": f"qft-{tag}-ingest",
        "QF_KEY_PREFIX": f"qft:{tag}:",
        "QF_POD_ID": f"pod-{tag}",
        "QF_LOG_LEVEL": "DEBUG",
    }


async def metric(url: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` at ``url`` whose labels include ``labels``."""
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        text = await resp.text()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Polls ``check`` until it is true; fails naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        await asyncio.sleep(0.1)


class TcpProxy:
    """A TCP proxy the test can cut (listener closed, connections reset) and restore on
    the same port: a dependency that goes away and comes back, without touching the
    shared service behind it."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))
