"""Several api processes in one container: start them, watch them, stop them together.

Why processes: one Python process serves from one CPU, and a Fargate task or a container
given more pays for CPUs it cannot use. Each child is a whole api pod as with one process
(``python -m service``): its own pod id ``<pod id>-<n>`` and so its own reply channel and
subscriber connection, its own admission, cache tier and dependency clients. The children
bind the public port with ``SO_REUSEPORT``, so the kernel spreads new connections over
them and no process sits in the data path.

What the supervisor owns:

- **Probes.** Only it listens on ``QF_METRICS_PORT``; each child serves its probe routes
  on a unix socket that the supervisor asks. ``/healthz`` is 200 only when every child
  runs and says it is alive, ``/readyz`` only when every child says it is ready (503
  naming the child and what it misses), ``/metrics`` the children's sum
  (prometheus_client's multiprocess mode, its files in a directory wiped at start).
- **Restarts.** A child that exits, or fails its liveness check ``LIVENESS_FAILURES``
  times in a row, is replaced after a back-off that grows while replacements die young.
  A child that never comes up ``MAX_START_FAILURES`` times in a row ends the supervisor
  with exit status 1: a broken configuration or dependency should fail the container,
  where ECS or compose see it, not loop inside it.
- **Stopping.** SIGTERM or SIGINT is passed to every child, which drains as a single
  process does (its requests in flight get their reply or their 504); the supervisor
  exits when they have, killing any child still there ``KILL_GRACE_S`` after its drain
  window. A child whose supervisor vanished (SIGKILL) sees its inherited pipe close and
  stops by itself, so no orphan keeps the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from queuefront import metrics, probes
from queuefront.backoff import Backoff
from queuefront.settings import Settings
from queuefront.telemetry import get_logger

log = get_logger(__name__)

CHILD_QUERY_TIMEOUT_S = 1.5
"""A child's answer to a probe (its readiness pings Redis with a 1 s timeout); the
supervisor asks all children at once, inside the 2 s that ``queuefront healthcheck``
and the load balancer wait."""
STARTING_POLL_S = 0.25
"""How often a starting child is asked whether it is up."""
LIVENESS_INTERVAL_S = 2.0
LIVENESS_FAILURES = 3
"""A child that fails this many liveness checks in a row (6 to 10 s) is replaced: all its
requests have been stalled that long. Its own check already allows its reply listener
30 s to reconnect."""
START_TIMEOUT_S = 60.0
"""A child not alive this long after its start is killed and counts as a failed start
(its own start-up steps time out well before)."""
STABLE_AFTER_S = 30.0
"""A child that lived this long resets the back-off of its slot."""
RESTART_BACKOFF = Backoff(first_s=0.5, cap_s=10.0, jitter="none")
"""Pause before a slot's next start, doubled per short life in a row. No jitter: this
process alone restarts its children, and the log says when the next start comes."""
MAX_START_FAILURES = 3
KILL_GRACE_S = 5.0
"""Beyond a child's drain window before it is killed."""


@dataclass
class Child:
    """One start of a slot's process."""

    slot: int
    pod_id: str
    socket: Path
    proc: asyncio.subprocess.Process
    started_at: float = field(default_factory=time.monotonic)
    alive_since: float | None = None

    @property
    def running(self) -> bool:
        return self.proc.returncode is None


@dataclass
class Slot:
    """One of the N processes, across its restarts."""

    index: int
    child: Child | None = None
    start_failures: int = 0  # starts in a row that never came up
    short_lives: int = 0  # restarts in a row of children that died young


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        processes: int,
        *,
        shutdown_timeout_s: float,
        runtime_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.base_pod_id = settings.pod_id
        self.slots = [Slot(i + 1) for i in range(processes)]
        self.shutdown_timeout_s = shutdown_timeout_s
        # one directory per probe port: only one supervisor can hold that port, so what
        # is in it is a previous run's and may be wiped
        self.runtime_dir = runtime_dir or (
            Path(tempfile.gettempdir()) / f"queuefront-api-{settings.metrics_port}"
        )
        self.metrics_dir = self.runtime_dir / "metrics"
        self.registry = CollectorRegistry()
        self.restarts = metrics.api_process_restarts(self.registry)
        for reason in ("exited", "not_alive"):
            self.restarts.labels(reason)
        self._spawned = 0
        self._stopping = asyncio.Event()
        self._signal: int | None = None
        self._failed: str | None = None
        self._parent_r = -1
        self._parent_w = -1
        self._own_dir = False

    # --- running -------------------------------------------------------------------------

    async def run(self) -> int:
        """Runs until a signal (0 when every child drained cleanly) or until a slot
        cannot start (1)."""
        runner = await probes.start_probe_server(
            self.settings.metrics_port, self.ready, self.live, registry=self.registry
        )
        try:
            self._prepare_runtime_dir()
            collector = MultiProcessCollector(None, path=str(self.metrics_dir))  # type: ignore[no-untyped-call]
            self.registry.register(collector)
            # children hold the read end; it reads EOF when this process is gone
            self._parent_r, self._parent_w = os.pipe()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
            log.info(
                "api processes starting",
                processes=len(self.slots),
                pod_id=self.base_pod_id,
                runtime_dir=str(self.runtime_dir),
            )
            keepers = [asyncio.create_task(self._keep(slot)) for slot in self.slots]
            await self._stopping.wait()
            clean = await self._stop_children(keepers)
        finally:
            await runner.cleanup()
            for fd in (self._parent_r, self._parent_w):
                if fd >= 0:
                    os.close(fd)
            if self._own_dir:
                shutil.rmtree(self.runtime_dir, ignore_errors=True)
        if self._failed is not None:
            log.error("api processes stopped", reason=self._failed)
            return 1
        log.info("api processes stopped", clean=clean)
        return 0 if clean else 1

    def _prepare_runtime_dir(self) -> None:
        """A fresh directory of our own: the metrics files of a previous run would be
        summed into this one's (prometheus_client asks for it to be wiped at start)."""
        if self.runtime_dir.is_symlink():
            raise RuntimeError(f"{self.runtime_dir} is a symbolic link; refusing to use it")
        if self.runtime_dir.exists():
            shutil.rmtree(self.runtime_dir)
        self.runtime_dir.mkdir(mode=0o700)
        self._own_dir = True
        info = self.runtime_dir.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise RuntimeError(f"{self.runtime_dir} is not a directory of this user")
        self.metrics_dir.mkdir()
        (self.runtime_dir / "probes").mkdir()

    def _on_signal(self, sig: int) -> None:
        if self._signal is not None:
            log.info("already stopping", signal=signal.Signals(sig).name)
            return
        self._signal = sig
        log.info("stopping api processes", signal=signal.Signals(sig).name)
        self._stopping.set()

    def _fail(self, reason: str) -> None:
        if self._failed is None and not self._stopping.is_set():
            self._failed = reason
            log.error("giving up", reason=reason)
            self._stopping.set()

    async def _stop_children(self, keepers: list[asyncio.Task[None]]) -> bool:
        """Passes the signal on and waits for every child's drain; True when all of them
        ended by themselves with status 0."""
        sig = self._signal or signal.SIGTERM
        for slot in self.slots:
            if slot.child is not None and slot.child.running:
                with contextlib.suppress(ProcessLookupError):
                    slot.child.proc.send_signal(sig)
        clean = True
        deadline = self.shutdown_timeout_s + KILL_GRACE_S
        _, pending = await asyncio.wait(keepers, timeout=deadline)
        if pending:
            clean = False
            for slot in self.slots:
                if slot.child is not None and slot.child.running:
                    log.error("api process did not stop in time: killed", pod_id=slot.child.pod_id)
                    with contextlib.suppress(ProcessLookupError):
                        slot.child.proc.kill()
            await asyncio.wait(pending)
        for slot in self.slots:
            if slot.child is not None and slot.child.proc.returncode not in (0, None):
                clean = False
        return clean

    # --- one slot ------------------------------------------------------------------------

    async def _keep(self, slot: Slot) -> None:
        """Keeps one process running until the supervisor stops."""
        while not self._stopping.is_set():
            child = await self._spawn(slot)
            if self._stopping.is_set():  # the stop came while it was being started
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(self._signal or signal.SIGTERM)
            code, reason = await self._watch(child)
            self._reap(child)
            if self._stopping.is_set():
                return
            lived_s = time.monotonic() - child.started_at
            if child.alive_since is None:
                slot.start_failures += 1
                if slot.start_failures >= MAX_START_FAILURES:
                    self._fail(
                        f"api process {slot.index} did not start {slot.start_failures} "
                        f"times in a row (last exit status {code})"
                    )
                    return
            else:
                slot.start_failures = 0
            slot.short_lives = 0 if lived_s >= STABLE_AFTER_S else slot.short_lives + 1
            delay = RESTART_BACKOFF(slot.short_lives + 1)
            self.restarts.labels(reason).inc()
            log.warning(
                "api process ended: restarting",
                slot=slot.index,
                pod_id=child.pod_id,
                pid=child.proc.pid,
                exit_status=code,
                reason=reason,
                lived_s=round(lived_s, 1),
                restart_in_s=delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _spawn(self, slot: Slot) -> Child:
        self._spawned += 1
        pod_id = f"{self.base_pod_id}-{self._spawned}"
        socket = self.runtime_dir / "probes" / f"{self._spawned}.sock"
        env = {
            **os.environ,
            "QF_POD_ID": pod_id,
            "QF_API_PROCESSES": "1",
            # read by prometheus_client when the child imports it, before any metric
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
        }
        args = ["--probe-socket", str(socket), "--parent-fd", str(self._parent_r)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service",
            *args,
            env=env,
            pass_fds=(self._parent_r,),
            # its own session: a terminal's Ctrl-C reaches the supervisor only, which
            # passes it on once
            start_new_session=True,
        )
        child = Child(slot.index, pod_id, socket, proc)
        slot.child = child
        log.info(
            "api process started",
            slot=slot.index,
            pod_id=pod_id,
            pid=proc.pid,
            probe_socket=str(socket),
        )
        return child

    async def _watch(self, child: Child) -> tuple[int, str]:
        """Waits for the child to exit, replacing it if it stops being alive; returns its
        exit status and why it ended (``exited`` or ``not_alive``)."""
        exited = asyncio.create_task(child.proc.wait())
        failures, reason = 0, "exited"
        while True:
            interval = STARTING_POLL_S if child.alive_since is None else LIVENESS_INTERVAL_S
            done, _ = await asyncio.wait({exited}, timeout=interval)
            if done:
                return exited.result(), reason
            if self._stopping.is_set():
                # draining: the supervisor's stop waits for it (and kills it if late)
                return await exited, reason
            status, _ = await self._ask(child, "/healthz")
            now = time.monotonic()
            if status == 200:
                failures = 0
                continue
            if child.alive_since is None:
                if now - child.started_at < START_TIMEOUT_S:
                    continue
            else:
                failures += 1
                if failures < LIVENESS_FAILURES:
                    continue
            reason = "not_alive"
            log.error(
                "api process not alive: replacing it",
                slot=child.slot,
                pod_id=child.pod_id,
                pid=child.proc.pid,
                status=status,
            )
            await self._terminate(child)

    async def _terminate(self, child: Child) -> None:
        """SIGTERM (it drains like any stopping pod), SIGKILL if it outlives the drain.
        SIGCONT too, as systemd does: a stopped process handles the SIGTERM only once
        it runs."""
        with contextlib.suppress(ProcessLookupError):
            child.proc.terminate()
            child.proc.send_signal(signal.SIGCONT)
        try:
            await asyncio.wait_for(child.proc.wait(), self.shutdown_timeout_s + KILL_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()

    def _reap(self, child: Child) -> None:
        """A dead child's live gauges leave the sum; its counters stay in it."""
        mark_process_dead(child.proc.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
        with contextlib.suppress(FileNotFoundError):
            child.socket.unlink()

    # --- probes ----------------------------------------------------------------------------

    async def _ask(self, child: Child, path: str) -> tuple[int | None, dict[str, Any]]:
        """(status, JSON body) of a child's probe route; (None, {}) when it does not answer."""
        if not child.running:
            return None, {}
        timeout = aiohttp.ClientTimeout(total=CHILD_QUERY_TIMEOUT_S)
        try:
            async with (
                aiohttp.ClientSession(
                    connector=aiohttp.UnixConnector(path=str(child.socket)), timeout=timeout
                ) as http,
                http.get(f"http://api{path}") as resp,
            ):
                body = await resp.json(content_type=None)
                if resp.status == 200 and child.alive_since is None:
                    # whoever asked first (the watcher, or a probe through the port)
                    child.alive_since = time.monotonic()
                    log.info("api process up", slot=child.slot, pod_id=child.pod_id)
                return resp.status, body if isinstance(body, dict) else {}
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None, {}

    async def _ask_all(self, path: str) -> list[tuple[Slot, int | None, dict[str, Any]]]:
        async def one(slot: Slot) -> tuple[Slot, int | None, dict[str, Any]]:
            if slot.child is None or not slot.child.running:
                return slot, None, {}
            status, body = await self._ask(slot.child, path)
            return slot, status, body

        return list(await asyncio.gather(*(one(slot) for slot in self.slots)))

    @staticmethod
    def _absent(slot: Slot) -> str:
        child = slot.child
        if child is None or not child.running:
            return f"api-{slot.index}: not running"
        if child.alive_since is None:
            return f"api-{slot.index}: starting"
        return f"api-{slot.index}: no answer"

    async def live(self) -> list[str]:
        """Every child that is not running or not alive (a restart is on its way)."""
        broken: list[str] = []
        for slot, status, body in await self._ask_all("/healthz"):
            if status is None:
                broken.append(self._absent(slot))
            elif status != 200:
                parts = body.get("broken") or ["not alive"]
                broken.extend(f"api-{slot.index}: {part}" for part in parts)
        return broken

    async def ready(self) -> list[str]:
        """What any child misses (each dependency named once), and children that do not
        answer."""
        if self._stopping.is_set():
            return ["stopping"]
        down: list[str] = []
        for slot, status, body in await self._ask_all("/readyz"):
            if status is None:
                down.append(self._absent(slot))
            elif status != 200:
                for dep in body.get("down") or [f"api-{slot.index}"]:
                    if dep not in down:
                        down.append(str(dep))
        return down


def supervise(settings: Settings, processes: int, shutdown_timeout_s: float) -> int:
    """Runs ``processes`` api processes until a signal; the exit status for the container."""
    supervisor = Supervisor(settings, processes, shutdown_timeout_s=shutdown_timeout_s)
    return asyncio.run(supervisor.run())
