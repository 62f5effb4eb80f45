"""``queuefront <role>``: one entry point for every process of the one image.

The container's command picks the role. The roles are the entry points of the group
``queuefront.roles`` that ``pyproject.toml`` declares (``importlib.metadata``): each process
names itself there, so this library imports none of them, and ``queuefront writer`` loads
only the writer's modules.

``backend`` (the demo stand-in for the legacy server) lives in ``examples``, which only
the image's ``demo`` target and a development checkout carry: in the production image
the role is declared but its module is absent, and it answers that it is not installed.
``healthcheck`` is the image's HEALTHCHECK, which does not know the role, so it asks
whichever of the process ports answers; it is built in, and answered before the entry
points are read, because it runs every 5 s in every container.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from queuefront import ports

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

Main = Callable[[], None]

ROLE_GROUP = "queuefront.roles"
"""The entry-point group of the roles (pyproject.toml)."""
HEALTHCHECK = "healthcheck"
NOT_INSTALLED_HINTS = {
    "backend": "build the Dockerfile's 'demo' target or run it from a checkout",
}
"""What to do about a role whose module this install leaves out."""

HEALTHCHECK_TIMEOUT_S = 2.0
"""Per port, for the connection and for the answer (the image's check has 3 s)."""
STATUS_LINE_MAX_BYTES = 1024


def roles() -> dict[str, EntryPoint]:
    """Role name -> its declared entry point; nothing is imported yet.

    ``importlib.metadata`` is imported here, not at the top: it imports ``email``, which
    the healthcheck (every 5 s in every container) must not pay for."""
    from importlib.metadata import entry_points

    return {entry.name: entry for entry in entry_points(group=ROLE_GROUP)}


def load(entry: EntryPoint) -> Main:
    """The role's ``main``. A role whose own module this install leaves out (``examples``
    in the production image) exits naming it; a missing dependency of an installed module
    is a real fault and raises."""
    try:
        main: Main = entry.load()
    except ModuleNotFoundError as exc:
        if exc.name is None or not (entry.module + ".").startswith(exc.name + "."):
            raise
        hint = NOT_INSTALLED_HINTS.get(entry.name, "the install is incomplete")
        sys.exit(f"role {entry.name!r} is not in this image ({exc}); {hint}")
    return main


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
    if role == HEALTHCHECK:
        sys.exit(healthcheck())
    declared = roles()
    if role not in declared:
        names = ", ".join([*sorted(declared), HEALTHCHECK])
        sys.exit(f"unknown role {role!r}; one of: {names}")
    # the entry points parse their own arguments (admin redrive <queue>, queues --wait-s)
    sys.argv = [f"queuefront {role}", *args[1:]]
    load(declared[role])()


if __name__ == "__main__":
    main()
