"""The benchmarks' closed-loop load generator: wrk (Debian's package), ``-t1``.

Closed loop: ``connections`` keep-alive connections, each sending its next request when
the previous one is answered, for ``seconds``. It measures what a server *sustains* —
throughput, and latency at that throughput — and never more than the server lets it
send; the SLA table's levels, whose requests leave on schedule whatever the server does,
use the open-loop generator (``bench/openloop.py``) instead.

Why wrk: it shares the machine's two cores with everything it measures, and as a C
program on one thread it costs about 0.05 ms of CPU per request, where a Python client
costs more than the api it drives. Requests that differ (an item per request, a vote's
body) are made by a small Lua script (:func:`path_script`, :func:`votes_script`).

``make bench`` (and ``make test-deps``) puts wrk in the venv (``.venv/bin/wrk``, from
Debian's package) when the machine has none; :func:`wrk_path` looks there first, then on
``PATH``. Loopback (or a local container's private address) only.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

RUN_GRACE_S = 30
"""wrk ends by itself after ``seconds``; past this much more it is stopped."""
INSTALL_HINT = "wrk is needed: `make test-deps` (or `make bench`) puts it in .venv/bin"


def local(url: str) -> bool:
    """Loopback, or a private address (``bench.compose`` reaches a container of its own
    stack on the engine's bridge network that way)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


def wrk_path() -> str | None:
    """The venv's wrk (next to this interpreter), else the first on ``PATH``."""
    beside = Path(sys.executable).parent / "wrk"
    return str(beside) if beside.exists() else shutil.which("wrk")


@dataclass
class WrkResult:
    requests: int
    """Answers received (any status)."""
    rps: float
    """Answers per second of wrk's own run time."""
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def ok(self) -> int:
        """2xx (and 3xx) answers."""
        return self.requests - self.non_2xx

    @property
    def ok_per_s(self) -> float:
        return self.rps * self.ok / self.requests if self.requests else 0.0


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if found is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    value, unit = found.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out: str) -> WrkResult:
    """wrk's report with ``--latency`` (its percentiles are nearest-rank ones, to within
    one rank, like ``bench.measure.percentile``)."""
    total = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if total is None or rps is None:
        raise ValueError(f"not a wrk report: {out[-500:]!r}")
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        requests=int(total.group(1)),
        rps=float(rps.group(1)),
        p50_ms=_ms(pct["50"]),
        p99_ms=_ms(pct["99"]),
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
    )


def path_script(template: str) -> str:
    """GETs of ``template`` with ``{i}`` replaced by the request's number (1, 2, ...):
    every request a new item, so no cache or coalescing answers for the server."""
    before, _, after = template.partition("{i}")
    return f"""
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "{before}" .. n .. "{after}")
end
"""


def votes_script(path: str = "/api/polls/bench/votes") -> str:
    """POSTs of ``{"choice":N % 5,"voter":"viewer-N"}`` to ``path``: a new voter each."""
    return f"""
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  local body = string.format('{{"choice":%d,"voter":"viewer-%d"}}', n % 5, n)
  return wrk.format(nil, "{path}", nil, body)
end
"""


def run(url: str, *, seconds: int, connections: int, lua: str | None = None) -> WrkResult:
    """``wrk -t1 -c<connections> -d<seconds>s --latency`` against ``url`` (with ``lua``, the
    script's requests: the url then gives only the host). Blocks for the run: call it
    through ``asyncio.to_thread`` where an event loop has other work meanwhile."""
    assert local(url), "the benchmarks send to this machine only"
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError(INSTALL_HINT)
    args = [wrk, "-t1", f"-c{connections}", f"-d{max(1, seconds)}s", "--latency"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if lua is not None:
            script.write(lua)
            script.flush()
            args += ["-s", script.name]
        out = subprocess.run(
            [*args, url], capture_output=True, text=True, check=True, timeout=seconds + RUN_GRACE_S
        ).stdout
    return parse_wrk(out)
