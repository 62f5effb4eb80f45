"""``queuefront healthcheck``, the image's HEALTHCHECK, against real sockets.

It speaks HTTP over a plain socket (see ``queuefront.cli.healthcheck`` for why), so these
check what urllib used to give for free: the path asked, the status read, and a bounded
wait on a port that accepts and never answers.
"""

from __future__ import annotations

import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from queuefront import cli


class _Handler(socketserver.StreamRequestHandler):
    answer: bytes = b""
    """The status line for /healthz; empty: read the request and never answer."""

    def handle(self) -> None:
        request_line = self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        if not self.answer:
            time.sleep(cli.HEALTHCHECK_TIMEOUT_S + 1)
            return
        status = self.answer if request_line.split()[1] == b"/healthz" else b"404 Not Found"
        self.wfile.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\nok")


@contextmanager
def server(answer: bytes) -> Iterator[int]:
    handler = type("Handler", (_Handler,), {"answer": answer})
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as srv:
        srv.daemon_threads = True
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            yield srv.server_address[1]
        finally:
            srv.shutdown()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ports_env(*ports: int) -> dict[str, str]:
    names = ("QF_HTTP_PORT", "QF_METRICS_PORT", "QF_DEMO_PORT")
    filler = [closed_port()] * (3 - len(ports))
    return {name: str(port) for name, port in zip(names, [*ports, *filler], strict=True)}


def test_a_port_answering_200_on_healthz_is_healthy() -> None:
    with server(b"200 OK") as port:
        assert cli.healthcheck(ports_env(port)) == 0


def test_any_other_status_is_not() -> None:
    with server(b"503 Service Unavailable") as port:
        assert cli.healthcheck(ports_env(port)) == 1


def test_it_asks_for_healthz() -> None:
    """The stand-in answers 404 on any other path."""
    with server(b"200 OK") as port:
        assert cli._answers_200(port)


def test_any_of_the_ports_will_do() -> None:
    with server(b"200 OK") as port:
        assert cli.healthcheck(ports_env(closed_port(), closed_port(), port)) == 0


def test_a_port_that_never_answers_is_given_up_within_the_timeout() -> None:
    with server(b"") as port:
        started = time.monotonic()
        assert cli.healthcheck(ports_env(port)) == 1
        assert time.monotonic() - started < cli.HEALTHCHECK_TIMEOUT_S + 0.5


def test_the_check_is_light() -> None:
    """It runs every 5 s in every container and has 3 s: no settings (pydantic took over
    4 s on a loaded machine), none of the services' clients, and no HTTP client library
    (urllib.request's imports were half of each run's CPU, see ``cli.healthcheck``)."""
    heavy = ("pydantic", "pydantic_settings", "aiohttp", "redis", "botocore", "urllib.request")
    heavy += ("http.client", "email", "ssl")
    code = (
        "import sys; from queuefront import cli; cli.healthcheck({'QF_HTTP_PORT': '1', "
        "'QF_METRICS_PORT': '1', 'QF_DEMO_PORT': '1'}); "
        f"print(sorted(m for m in sys.modules if m in {heavy!r} or m.split('.')[0] in {heavy!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]", out
