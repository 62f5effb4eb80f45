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
import socket
import sys
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

PUBLIC_HOST = "0.0.0.0"
CANNOT_BIND_EXIT_STATUS = 1
"""A pod whose public port is taken ends at once with this status (its supervisor counts
it as a start that failed; ECS and compose see the container fail)."""


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
    settings = Settings()  # a random pod id unless one is given (the children's: <id>-<n>)
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
    public = bind_public_port(settings.http_port, shared=child)
    run_pod(settings, public, probe_socket=args.probe_socket, parent_fd=args.parent_fd)


def bind_public_port(port: int, *, shared: bool) -> socket.socket:
    """The public port, bound before anything else of the pod starts; exits if it cannot be.

    Why first: a port that cannot be bound is known at once, in the process's first
    second, whatever the machine's load. Bound last (by the server, after the pod's
    start-up), the failure came after the pod had connected to Redis and SQS and served
    its probe socket, and on a busy machine its supervisor had already seen it answer
    ``/healthz`` and counted the start as a success: it restarted such processes forever
    instead of giving up after ``MAX_START_FAILURES``.

    Bound, not listening: the server listens once the pod has started, so no connection
    waits in the accept queue of a process that cannot serve it yet. ``shared``: one of a
    supervisor's processes, which share the port (``SO_REUSEPORT``).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # what asyncio's create_server does on POSIX: a restart binds despite TIME_WAIT
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:  # the kernel spreads new connections over the processes
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((PUBLIC_HOST, port))
    except OSError as exc:
        sock.close()
        log.error(
            "cannot bind the public port: stopping",
            port=port,
            error=exc.strerror or str(exc),
        )
        sys.exit(CANNOT_BIND_EXIT_STATUS)
    sock.setblocking(False)
    return sock


def run_pod(
    settings: Settings,
    public: socket.socket,
    probe_socket: str | None = None,
    parent_fd: int | None = None,
) -> None:
    """One api pod in this process, served on ``public`` (``bind_public_port``);
    ``probe_socket``: one of a supervisor's children."""
    from queuefront import probes
    from service.app import init_app
    from service.context import PUBLIC_SOCKET, ROUTES

    app = init_app(settings)
    app[PUBLIC_SOCKET] = public
    if probe_socket is not None:
        app[probes.PROBE_SOCKET] = probe_socket
    if parent_fd is not None:
        app.on_startup.append(_stop_without_parent(parent_fd))
    web.run_app(
        app,
        sock=public,
        print=None,
        access_log=None,
        shutdown_timeout=shutdown_timeout_s(app[ROUTES].routes),
        handle_signals=True,
        # a burst must find room in the accept queue, not a refused connection; the
        # kernel caps it at net.core.somaxconn
        backlog=settings.listen_backlog,
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
