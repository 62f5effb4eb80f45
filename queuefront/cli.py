"""``queuefront <role>``: one entry point for every process of the one image.

The container's command picks the role. Each role is a real import of its entry point's
``main`` (not a module string run with ``runpy``), so a renamed or missing module fails
``mypy`` and the tests instead of the container's start-up in production.

``backend`` (the demo stand-in for the legacy server) lives in ``examples``, which only
the image's ``demo`` target and a development checkout carry: in the production image
the role answers that it is not installed. ``healthcheck`` is the image's HEALTHCHECK,
which does not know the role, so it asks whichever of the process ports answers.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence

from queuefront import ports

Main = Callable[[], None]

DEMO_BACKEND_MODULE = "examples.legacy_backend"
"""Optional: absent from the production image (Dockerfile target ``production``)."""

HEALTHCHECK_TIMEOUT_S = 2.0
"""Per port, for the connection and for the answer (the image's check has 3 s)."""
STATUS_LINE_MAX_BYTES = 1024


def _api() -> None:
    from service.__main__ import main

    main()


def _worker() -> None:
    from workers.priority import main

    main()


def _writer() -> None:
    from workers.writer import main

    main()


def _migrate() -> None:
    from queuefront.migrate import main

    main()


def _queues() -> None:
    from queuefront.queues import main

    main()


def _admin() -> None:
    from queuefront.admin import main

    main()


def _backend() -> None:
    try:
        module = importlib.import_module(DEMO_BACKEND_MODULE)
    except ModuleNotFoundError as exc:
        sys.exit(
            f"role 'backend' (the demo backend) is not in this image ({exc}); "
            "build the Dockerfile's 'demo' target or run it from a checkout"
        )
    main: Main = module.main
    main()


def _init() -> None:
    """The compose init service: queues and migrations, then exit."""
    for step in (_queues, _migrate):
        sys.argv = sys.argv[:1]
        step()


ROLES: dict[str, Main] = {
    "api": _api,
    "worker": _worker,
    "writer": _writer,
    "migrate": _migrate,
    "queues": _queues,
    "admin": _admin,
    "init": _init,
    "backend": _backend,
}
"""Role name -> entry point. The imports happen inside, so ``queuefront writer`` does not
load aiohttp's server or the api's modules."""

ENTRY_MODULES = {
    "api": "service.__main__",
    "worker": "workers.priority",
    "writer": "workers.writer",
    "migrate": "queuefront.migrate",
    "queues": "queuefront.queues",
    "admin": "queuefront.admin",
    "backend": DEMO_BACKEND_MODULE,
}
"""The module each role runs (tests derive each process's SQS access from it)."""


def healthcheck(environ: Mapping[str, str] | None = None) -> int:
    """0 if any process port of this container answers ``/healthz`` with 200. Light on
    purpose (no settings import): see ``queuefront.ports``.

    One HTTP/1.0 request over a plain socket rather than ``urllib.request``: the check
    runs every 5 s in every container, and urllib's imports (http.client, email, ssl)
    doubled the CPU of each run — 0.15 s against 0.08 s for a bare ``python -c pass``
    through ``docker exec`` on the development machine, about 0.07 of a core for the
    compose stack's five application containers, on the cores the stack serves from.
    """
    for port in ports.probe_ports(os.environ if environ is None else environ):
        if _answers_200(port):
            return 0
    return 1


def _answers_200(port: int) -> bool:
    try:
        # the timeout stays on the socket: it bounds the connect and each read
        with socket.create_connection(("127.0.0.1", port), timeout=HEALTHCHECK_TIMEOUT_S) as s:
            s.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            head = b""
            while b"\r\n" not in head and len(head) < STATUS_LINE_MAX_BYTES:
                chunk = s.recv(STATUS_LINE_MAX_BYTES)
                if not chunk:
                    break
                head += chunk
    except OSError:
        return False
    status = head.split(b"\r\n", 1)[0].split()
    return len(status) >= 2 and status[0].startswith(b"HTTP/") and status[1] == b"200"


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    role = args[0] if args else "api"
    if role == "healthcheck":
        sys.exit(healthcheck())
    if role not in ROLES:
        names = ", ".join([*ROLES, "healthcheck"])
        sys.exit(f"unknown role {role!r}; one of: {names}")
    # the entry points parse their own arguments (admin redrive <queue>, queues --wait-s)
    sys.argv = [f"queuefront {role}", *args[1:]]
    ROLES[role]()


if __name__ == "__main__":
    main()
