"""The benchmarks' open-loop load generator: lean HTTP/1.1, for the SLA table (``bench/sla.py``).

Open loop: request ``i`` of ``n`` is due at ``i * window_s / n`` and is sent then,
whatever the earlier requests are doing. A closed-loop tool (wrk,
``bench/closedloop.py``: each client waiting on its previous answer) stops sending
exactly when the server is slowest and so never measures the stall ("coordinated
omission"); here a slow answer never delays the next request, so latency is measured
from the request's *scheduled* time.

HTTP/1.1 carries one request at a time per connection, so the generator needs one
connection per request in flight: it reuses idle keep-alive connections and opens new
ones as needed, up to ``max_connections`` (a request that finds the bound reached waits
for a free connection, and if it never gets one it is counted as ``no_connection``,
which marks the measurement, not the server, as the limit).

It must cost little CPU, because it shares the machine's two cores with everything it
measures: it runs on uvloop with raw asyncio Protocols, requests are pre-built bytes,
and an answer is parsed only as far as HTTP framing needs (status line, Content-Length,
chunked, ``Connection: close``); bodies are counted, never kept. Timeouts are found by
one sweeper walking the requests in schedule order, not by a timer per request.

Every run is bounded: ``n`` requests, each resolved (answered, failed or timed out) by
``scheduled + timeout_s``, so a run ends by ``window_s + timeout_s`` at the latest.
Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from array import array
from collections import Counter, deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol, cast

from bench.measure import self_cpu_s

LOOPBACK = ("127.0.0.1", "localhost", "::1")
TIMER_RESOLUTION_S = 0.001
"""uvloop's timers and ``loop.time()`` tick in milliseconds."""
SWEEP_INTERVAL_S = 0.1
"""How often timeouts are looked for: the resolution of ``timeout``. Not finer: on these
machines every wake-up of a sleeping process costs 80-200 µs of CPU."""
START_LEAD_S = 0.05
"""The first request is due this long after the run starts, so it leaves on time."""
DRAIN_GRACE_S = 2.0
"""Past ``window_s + timeout_s`` the run is cut whatever is left (it never should be)."""


class Failure(IntEnum):
    """Why a request got no HTTP answer (stored as a negative status)."""

    CONNECT_ERROR = -1
    """The connection was refused or failed."""
    RESET = -2
    """The connection closed (or was reset) before a whole answer arrived."""
    TIMEOUT = -3
    """Sent, but no whole answer within the client timeout."""
    CONNECT_TIMEOUT = -4
    """Its connection was not established within the client timeout."""
    NO_CONNECTION = -5
    """Never sent: the generator was at its connection bound (a limit of the measurement)."""


def outcome_name(status: int) -> str:
    """``"200"``, ``"503"``, ... for answers; ``"connect_error"``, ... for failures."""
    return str(status) if status > 0 else Failure(status).name.lower()


def request_bytes(host: str, port: int, path: str, i: int) -> bytes:
    """The request line and headers of request ``i`` (``{i}`` in ``path`` is replaced)."""
    target = path.replace("{i}", str(i))
    return f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode("ascii")


class _Owner(Protocol):
    def answered(self, conn: Conn, req: int, status: int) -> None: ...
    def lost(self, conn: Conn, req: int) -> None: ...


class Conn(asyncio.Protocol):
    """One keep-alive connection, carrying one request at a time.

    Parses only what framing needs; ``owner`` hears of every answer and every loss.
    """

    __slots__ = (
        "buf",
        "chunked",
        "close_after",
        "dead",
        "in_head",
        "owner",
        "remaining",
        "req",
        "status",
        "transport",
    )

    def __init__(self, owner: _Owner) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.req = -1  # the request waiting on this connection; -1: none
        self.dead = False
        self._reset_parse()

    def _reset_parse(self) -> None:
        self.buf = b""
        self.in_head = True
        self.status = 0
        self.remaining = 0  # body bytes still expected; -1: until the connection closes
        self.chunked = False
        self.close_after = False

    def send(self, req: int, data: bytes) -> None:
        assert self.transport is not None
        self.req = req
        self.transport.write(data)

    def abort(self) -> None:
        self.req = -1
        self.dead = True
        if self.transport is not None:
            self.transport.abort()

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport quacks like asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.req < 0:  # nothing was asked: a confused peer, drop it
            self.abort()
            return
        try:
            self._parse(self.buf + data if self.buf else data)
        except ValueError:  # not HTTP as we know it: the request failed like a reset
            if self.transport is not None:
                self.transport.abort()  # connection_lost reports self.req

    def _parse(self, buf: bytes) -> None:
        if self.in_head:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            head = buf[:end].lower()
            self.status = int(head[9:12])
            self.close_after = b"\r\nconnection: close" in head or head.startswith(b"http/1.0")
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 17)
                self.remaining = int(head[at + 17 : stop if stop >= 0 else None])
            elif b"\r\ntransfer-encoding: chunked" in head:
                self.chunked = True
            elif self.status in (204, 304) or 100 <= self.status < 200:
                self.remaining = 0
            else:
                self.remaining = -1
            self.in_head = False
            buf = buf[end + 4 :]
        if self.chunked:
            self.buf = buf
            if self._chunks_done():
                self._complete()
        elif self.remaining >= 0:
            if len(buf) >= self.remaining:
                self._complete()
            else:
                self.remaining -= len(buf)
                self.buf = b""
        else:
            self.buf = b""  # read until the connection closes

    def _chunks_done(self) -> bool:
        """Consumes whole chunks from ``buf``; True once the last (empty) one is in."""
        buf = self.buf
        while True:
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                self.buf = buf
                return False
            size = int(buf[:line_end].split(b";")[0], 16)
            if size == 0:
                # no trailers: "\r\n" follows; with trailers: they end with "\r\n\r\n"
                rest = buf[line_end + 2 :]
                return rest.startswith(b"\r\n") or b"\r\n\r\n" in rest
            if len(buf) < line_end + 2 + size + 2:
                self.buf = buf
                return False
            buf = buf[line_end + 2 + size + 2 :]

    def _complete(self) -> None:
        req, status, close = self.req, self.status, self.close_after
        self.req = -1
        self._reset_parse()
        if close:
            self.dead = True
            if self.transport is not None:
                self.transport.close()
        self.owner.answered(self, req, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        req = self.req
        if req >= 0 and not self.in_head and self.remaining == -1 and not self.chunked:
            self._complete()  # the answer ran until the close: it is whole
            req = -1
        self.req = -1
        self.owner.lost(self, req)


@dataclass
class OpenLoopResult:
    """Per-request records of one open-loop run; times in seconds from the first request's
    scheduled time (request ``i`` is due at ``i * window_s / n``).

    ``status[i]``: the HTTP status, a negative :class:`Failure`, or 0 (never resolved —
    only if the run was cut). ``sent[i]``/``end[i]`` are NaN when it never happened.
    """

    n: int
    window_s: float
    timeout_s: float
    sent: array[float]
    end: array[float]
    status: array[int]
    cpu_s: float = 0.0
    wall_s: float = 0.0
    dispatch_lag_s: list[float] = field(default_factory=list)
    """Per wake of the scheduler, how late its oldest due request was dispatched: the
    generator's own lateness (``send_lag_s`` also includes opening a connection)."""
    connections_opened: int = 0
    max_open: int = 0

    def scheduled(self, i: int) -> float:
        return i * self.window_s / self.n

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_s / self.n * 1e6 if self.n else 0.0

    def outcomes(self) -> Counter[str]:
        return Counter(outcome_name(s) if s else "unresolved" for s in self.status)

    def latency_s(self, i: int) -> float:
        """From the scheduled time (so a late send counts), NaN without an answer."""
        return self.end[i] - self.scheduled(i) if self.status[i] > 0 else math.nan

    def send_lag_s(self) -> list[float]:
        """How late each sent request left, against its schedule (including the time to
        open a connection when none was free)."""
        return [s - self.scheduled(i) for i, s in enumerate(self.sent) if not math.isnan(s)]


@dataclass
class _OpenLoop:
    host: str
    port: int
    path: str
    n: int
    window_s: float
    timeout_s: float
    max_connections: int
    result: OpenLoopResult = field(init=False)

    def __post_init__(self) -> None:
        nan = math.nan
        self.result = OpenLoopResult(
            self.n,
            self.window_s,
            self.timeout_s,
            array("d", [nan]) * self.n,
            array("d", [nan]) * self.n,
            array("i", [0]) * self.n,
        )
        self._loop = asyncio.get_running_loop()
        self._t0 = 0.0
        self._idle: list[Conn] = []
        self._open = 0  # connections established or being established
        self._connecting = 0
        self._closing = False
        self._waiting: deque[int] = deque()  # due, not yet on a connection
        self._on_conn: dict[int, Conn] = {}
        self._unresolved: deque[int] = deque()  # dispatched, in schedule order
        self._resolved = 0
        self._done = asyncio.Event()
        self._conns: set[Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._fixed = (
            None if "{i}" in self.path else request_bytes(self.host, self.port, self.path, 0)
        )

    # --- bookkeeping -----------------------------------------------------------------------

    def _now(self) -> float:
        # not loop.time(): uvloop's is cached per iteration, in whole milliseconds
        return time.perf_counter() - self._t0

    def _resolve(self, req: int, status: int) -> None:
        res = self.result
        if res.status[req]:
            return
        res.status[req] = status
        res.end[req] = self._now()
        self._resolved += 1
        if self._resolved == self.n:
            self._done.set()

    def _send(self, conn: Conn, req: int) -> None:
        data = self._fixed or request_bytes(self.host, self.port, self.path, req)
        self._on_conn[req] = conn
        self.result.sent[req] = self._now()
        conn.send(req, data)

    def _next_waiting(self) -> int:
        status = self.result.status
        while self._waiting:
            req = self._waiting.popleft()
            if not status[req]:
                return req
        return -1

    def _give(self, conn: Conn) -> None:
        """A free connection takes the oldest waiting request, or goes idle."""
        req = self._next_waiting()
        if req >= 0:
            self._send(conn, req)
        else:
            self._idle.append(conn)

    # --- Conn owner --------------------------------------------------------------------------

    def answered(self, conn: Conn, req: int, status: int) -> None:
        self._on_conn.pop(req, None)
        self._resolve(req, status)
        if not conn.dead and not self._closing:
            self._give(conn)

    def lost(self, conn: Conn, req: int) -> None:
        if conn in self._conns:
            self._conns.discard(conn)
            self._open -= 1
        if req >= 0:
            self._on_conn.pop(req, None)
            self._resolve(req, Failure.RESET)
        self._top_up()

    def _top_up(self) -> None:
        """A freed slot goes to waiting requests beyond the connections on their way."""
        if (
            not self._closing
            and len(self._waiting) > self._connecting
            and self._open < self.max_connections
        ):
            self._open_connection()

    # --- connections -------------------------------------------------------------------------

    def _open_connection(self) -> None:
        self._open += 1
        self._connecting += 1
        task = self._loop.create_task(self._connect())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self) -> None:
        conn = Conn(self)
        try:
            # a connect stuck in SYN retries would hold its slot for minutes
            async with asyncio.timeout(self.timeout_s):
                await self._loop.create_connection(lambda: conn, self.host, self.port)
        except TimeoutError:
            # the request it was for has timed out meanwhile (the sweeper said so)
            self._connecting -= 1
            self._open -= 1
            self._top_up()
            return
        except OSError:
            self._connecting -= 1
            self._open -= 1
            req = self._next_waiting()
            if req >= 0:
                self._resolve(req, Failure.CONNECT_ERROR)
            return
        self._connecting -= 1
        self._conns.add(conn)
        self.result.connections_opened += 1
        self.result.max_open = max(self.result.max_open, self._open)
        self._give(conn)

    def _dispatch(self, req: int) -> None:
        self._unresolved.append(req)
        while self._idle:
            conn = self._idle.pop()  # the most recently used: warm, and surely alive
            if not conn.dead:
                self._send(conn, req)
                return
        self._waiting.append(req)
        if self._open < self.max_connections:
            self._open_connection()  # for this request (or whichever waits longest)

    # --- the two loops -------------------------------------------------------------------------

    async def _schedule(self) -> None:
        """Dispatches every request at (or as soon as possible after) its scheduled time.

        It never sleeps less than the event loop's timer resolution: a shorter sleep
        returns at once and the loop would spin instead of sending.
        """
        sched = self.result.scheduled
        i = 0
        while i < self.n:
            now = self._now()
            if sched(i) <= now:
                self.result.dispatch_lag_s.append(now - sched(i))
            while i < self.n and sched(i) <= now:
                self._dispatch(i)
                i += 1
            if i < self.n:
                await asyncio.sleep(max(TIMER_RESOLUTION_S, sched(i) - self._now()))

    async def _sweep(self) -> None:
        """Times out requests in schedule order (their deadlines are in that order too)."""
        res = self.result
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = self._now()
            while self._unresolved:
                req = self._unresolved[0]
                if res.status[req]:
                    self._unresolved.popleft()
                    continue
                if now < res.scheduled(req) + self.timeout_s:
                    break
                self._unresolved.popleft()
                conn = self._on_conn.pop(req, None)
                if conn is not None:
                    conn.abort()  # its answer may still come: the connection is spent
                    self._resolve(req, Failure.TIMEOUT)
                elif self._open >= self.max_connections:
                    self._resolve(req, Failure.NO_CONNECTION)
                else:
                    self._resolve(req, Failure.CONNECT_TIMEOUT)

    async def run(self) -> OpenLoopResult:
        cpu0, wall0 = self_cpu_s(), time.perf_counter()
        self._t0 = time.perf_counter() + START_LEAD_S
        loops = [
            self._loop.create_task(self._schedule()),
            self._loop.create_task(self._sweep()),
        ]
        try:
            limit = START_LEAD_S + self.window_s + self.timeout_s + DRAIN_GRACE_S
            # past the limit, leftovers stay 0 ("unresolved"): reported, never hidden
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), limit)
        finally:
            self._closing = True
            for task in [*loops, *self._tasks]:
                task.cancel()
            await asyncio.gather(*loops, *self._tasks, return_exceptions=True)
            for conn in list(self._conns):
                conn.abort()
            self.result.cpu_s = self_cpu_s() - cpu0
            self.result.wall_s = time.perf_counter() - wall0
        return self.result


async def open_loop(
    host: str,
    port: int,
    path: str,
    *,
    n: int,
    window_s: float,
    timeout_s: float,
    max_connections: int = 10_000,
) -> OpenLoopResult:
    """Sends ``n`` GETs of ``path`` (``{i}``: the request's index) evenly over ``window_s``.

    Each request is resolved by ``timeout_s`` after its scheduled time at the latest.
    """
    assert host in LOOPBACK, "the benchmark sends to loopback only"
    assert n > 0 and window_s > 0 and timeout_s > 0 and max_connections > 0
    gen = _OpenLoop(host, port, path, n, window_s, timeout_s, max_connections)
    return await gen.run()
