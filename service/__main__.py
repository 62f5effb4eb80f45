"""``python -m service``: run the api pod, or ``QF_API_PROCESSES`` of them.

With one process (``make run``, the tests, a one-CPU container) this process is the pod.
With more, it becomes their supervisor (``service.supervisor``) and starts each child as
``python -m service --probe-socket … --parent-fd …``: a pod that shares the public port
(``SO_REUSEPORT``) and serves its probe routes to the supervisor alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import structlog
import uvloop
from aiohttp import web

from queuefront.routes import Route, load_routes
from queuefront.settings import Settings
from queuefront.telemetry import configure_logging, get_logger
from service.cpus import available_cpus

log = get_logger(__name__)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="the queuefront api")
    # set by the supervisor for its children, not meant to be given by hand
    parser.add_argument("--probe-socket", help=argparse.SUPPRESS)
    parser.add_argument("--parent-fd", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _log_pod_id(pod_id: str) -> None:
    """Every log line of this process names its pod: with several processes per task,
    the task's log stream interleaves them."""

    def add(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event.setdefault("pod_id", pod_id)
        return event

    structlog.configure(processors=[add, *structlog.get_config()["processors"]])


def shutdown_timeout_s(routes: Sequence[Route]) -> float:
    """Requests in flight get their replies (or their 504) before a pod goes."""
    return max((r.timeout_s for r in routes), default=1.0) + 1


def api_processes(settings: Settings) -> int:
    return settings.api_processes or available_cpus()


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse(argv)
    settings = Settings()
    # a random id per process start unless one is given; the supervisor's children get
    # theirs from it (<pod id>-<n>)
    settings = settings.model_copy(update={"pod_id": settings.pod_id or uuid.uuid4().hex[:12]})
    configure_logging(settings.log_level, settings.log_format)
    _log_pod_id(settings.pod_id)
    child = args.probe_socket is not None
    processes = 1 if child else api_processes(settings)
    if processes > 1:
        # the supervisor does not load the api's modules: it only starts and watches
        from service.auth import check_configuration
        from service.supervisor import supervise

        # a bad configuration is refused once, here, rather than by every child
        check_configuration(settings)
        routes = load_routes(settings.routes_file).routes
        sys.exit(supervise(settings, processes, shutdown_timeout_s(routes)))
    run_pod(settings, probe_socket=args.probe_socket, parent_fd=args.parent_fd)


def run_pod(
    settings: Settings, probe_socket: str | None = None, parent_fd: int | None = None
) -> None:
    """One api pod in this process; ``probe_socket``: one of a supervisor's children."""
    from queuefront import probes
    from service.app import init_app
    from service.context import ROUTES

    app = init_app(settings)
    if probe_socket is not None:
        app[probes.PROBE_SOCKET] = probe_socket
    if parent_fd is not None:
        app.on_startup.append(_stop_without_parent(parent_fd))
    web.run_app(
        app,
        host="0.0.0.0",
        port=settings.http_port,
        print=None,
        access_log=None,
        shutdown_timeout=shutdown_timeout_s(app[ROUTES].routes),
        handle_signals=True,
        # a burst must find room in the accept queue, not a refused connection; the
        # kernel caps it at net.core.somaxconn
        backlog=settings.listen_backlog,
        # several processes on one port: the kernel spreads connections over them
        reuse_port=probe_socket is not None,
        loop=uvloop.new_event_loop(),
    )


def _stop_without_parent(fd: int) -> Callable[[web.Application], Awaitable[None]]:
    """The supervisor holds the other end of ``fd``: when it is gone (even by SIGKILL)
    the pipe reads EOF and this process drains and stops like on SIGTERM."""

    async def watch(_: web.Application) -> None:
        loop = asyncio.get_running_loop()

        def gone() -> None:
            loop.remove_reader(fd)
            log.warning("supervisor gone: stopping")
            os.kill(os.getpid(), signal.SIGTERM)

        loop.add_reader(fd, gone)

    return watch


if __name__ == "__main__":
    main()
