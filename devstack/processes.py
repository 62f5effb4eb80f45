"""Real processes on free loopback ports: spawn, wait until they answer, stop.

The SQS emulator and the demo backend are started here too, the same way for the test
fixtures and the benchmarks.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
SQS_DIR = ROOT / "deploy" / "local" / "sqs"


_GIVEN_PORTS: deque[int] = deque(maxlen=512)


def free_port() -> int:
    """A port nothing listens on, and not one this process handed out recently: the
    kernel can give the same free port to two binds in a row, and an api whose public
    and probe ports came out equal would fail to start."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.append(port)
            return port


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
    """Its probe port (``/metrics``, ``/readyz``); the emulator's and backend's only port."""

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


async def wait_http(
    url: str,
    timeout_s: float = 20.0,
    proc: Proc | None = None,
    ok: Callable[[int], bool] = lambda status: status == 200,
) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc is not None and proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited:\n{proc.log()[-3000:]}")
            try:
                async with http.get(url) as resp:
                    if ok(resp.status):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    tail = proc.log()[-3000:] if proc else ""
    raise TimeoutError(f"{url} not ready after {timeout_s}s\n{tail}")


async def start_emulator(log_dir: Path) -> tuple[str, Proc]:
    """The SQS emulator on a free port; returns its URL once it answers."""
    node = shutil.which("node")
    assert node, "node is needed for the SQS emulator (make test installs its package)"
    assert (SQS_DIR / "node_modules").exists(), "run `make test` (it installs the emulator)"
    port = free_port()
    proc = spawn("sqs", [node, str(SQS_DIR / "server.mjs")], {"SQS_PORT": str(port)}, log_dir)
    proc.port = port
    url = f"http://127.0.0.1:{port}"
    # any HTTP answer will do: the emulator has no health route
    await wait_http(url, proc=proc, ok=lambda status: status < 500)
    return url, proc


async def start_backend(log_dir: Path, **env: str) -> tuple[str, Proc]:
    """The demo backend on a free port (``env``: its ``QF_DEMO_*`` settings)."""
    port = free_port()
    proc = spawn(
        "backend",
        [sys.executable, "-m", "examples.legacy_backend"],
        {"QF_DEMO_PORT": str(port), **env},
        log_dir,
    )
    proc.port = port
    url = f"http://127.0.0.1:{port}"
    await wait_http(f"{url}/__stats", proc=proc)
    return url, proc


async def start_redis(
    log_dir: Path, port: int | None = None, extra_args: Sequence[str] = ()
) -> tuple[str, Proc]:
    """A Redis of the test's own, so a fault test can stop or restart it without
    touching the shared one (the same port again after a restart: ``port``).
    ``extra_args``: more of its configuration, e.g. ``("--maxmemory", "8mb")``."""
    server = shutil.which("redis-server")
    assert server, "redis-server is needed for the fault tests"
    port = port or free_port()
    args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += list(extra_args)
    proc = spawn("redis", args, {}, log_dir)
    proc.port = port
    deadline = time.monotonic() + 10
    while not port_open(port):
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not start:\n{proc.log()[-2000:]}")
        await asyncio.sleep(0.02)
    return f"redis://127.0.0.1:{port}/0", proc
