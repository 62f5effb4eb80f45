"""The default ports, and where a process of any role answers ``/healthz``.

Its own module, without pydantic: the image's HEALTHCHECK runs ``queuefront healthcheck``
every 5 s in every container, and importing the settings (pydantic-settings) takes
0.3 s of CPU on a quiet machine and over 4 s on a loaded one — longer than the check's
3 s timeout, which then marks healthy containers unhealthy. ``Settings`` takes its
defaults from here, so there is still one source for them.
"""

from __future__ import annotations

from collections.abc import Mapping

HTTP_PORT = 8080
"""The api's public port (``QF_HTTP_PORT``)."""
METRICS_PORT = 9100
"""Every process's probe port: /healthz, /readyz, /metrics (``QF_METRICS_PORT``)."""
DEMO_PORT = 9000
"""The demo backend's port (``QF_DEMO_PORT``; not in the production image)."""

_PORTS = (
    ("QF_HTTP_PORT", HTTP_PORT),
    ("QF_METRICS_PORT", METRICS_PORT),
    ("QF_DEMO_PORT", DEMO_PORT),
)


def probe_ports(environ: Mapping[str, str]) -> list[int]:
    """The api's public port, every process's probe port, the demo backend's port, as
    the settings would read them from ``environ`` (names are case-insensitive there)."""
    upper = {k.upper(): v for k, v in environ.items() if k.upper().startswith("QF_")}
    return [int(upper.get(name, default)) for name, default in _PORTS]
