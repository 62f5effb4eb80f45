"""What the benchmarks read besides their load: CPU time and percentiles, one way each.

CPU time, from the one source that can see each subject:

- this process: :func:`self_cpu_s` (``time.process_time``: user + system of every thread,
  what ``getrusage(RUSAGE_SELF)`` reports, at a finer resolution);
- another process: :func:`process_cpu_s`, ``utime + stime`` from ``/proc/<pid>/stat``,
  summed over the process *and its descendants*, since an api with several processes (a
  supervisor and its children) is a tree and its CPU is the tree's;
- processes known by name only (the engine's userland proxy): :func:`named_cpu_s`;
- the whole machine: :func:`machine_busy_s` from ``/proc/stat`` (every core, everything
  but idle and iowait: Postgres, Redis, the kernel and the load generator included);
- a container: :func:`container_cpu`, its cgroup's CPU and the time the kernel held it back
  at its CPU limit (cgroup v2 ``cpu.stat`` or v1 ``cpuacct.usage``), which ``/proc`` of
  the host does not attribute to the container.

:class:`CpuMeter` turns any of them into "CPU used over one run". Percentiles of
per-request values are :func:`percentile`, nearest rank, everywhere.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

CLK_TCK = os.sysconf("SC_CLK_TCK")
"""Clock ticks per second: the unit of ``/proc``'s CPU times."""
PROC = Path("/proc")
CGROUP = Path("/sys/fs/cgroup")
US_PER_S = 1e6
NS_PER_S = 1e9


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of unsorted ``values``; NaN when empty.

    The value at rank ``ceil(q * n)`` of the sorted values: always a measured value, never
    an interpolation between two, so a p99 is a latency some request really had. wrk
    reports its percentiles the same way (to within one rank), so the benchmarks' own
    percentiles and wrk's read alike.
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


# --- CPU -------------------------------------------------------------------------------


class CpuTime(NamedTuple):
    """CPU seconds used, and seconds held back at a CPU limit (containers only)."""

    used_s: float
    throttled_s: float = 0.0


CpuReader = Callable[[], CpuTime]
"""Reads a subject's CPU time so far."""


def self_cpu_s() -> float:
    """User + system CPU of this process so far."""
    return time.process_time()


@dataclass(frozen=True)
class ProcStat:
    name: str
    parent: int
    cpu_s: float
    """utime + stime so far."""


def parse_stat(text: str) -> ProcStat:
    """One ``/proc/<pid>/stat`` line. The command name is in brackets and may itself hold
    spaces and brackets, so the fields are taken after its *last* closing bracket."""
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text.rsplit(")", 1)[1].split()
    # fields from "state" (field 3) on: ppid is field 4, utime and stime 14 and 15
    return ProcStat(name, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK)


def processes() -> dict[int, ProcStat]:
    """Every process of the machine, from one pass over ``/proc/<pid>/stat``."""
    out = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = parse_stat((entry / "stat").read_text())
            except (OSError, ValueError, IndexError):
                continue  # gone between the listing and the read
    return out


def process_cpu_s(pid: int, procs: Mapping[int, ProcStat] | None = None) -> float:
    """CPU seconds of ``pid`` and its descendants still running; NaN once ``pid`` is gone
    (a difference with NaN shows as such instead of as a negative figure)."""
    procs = processes() if procs is None else procs
    if pid not in procs:
        return math.nan
    children: dict[int, list[int]] = {}
    for child, stat in procs.items():
        children.setdefault(stat.parent, []).append(child)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += procs[p].cpu_s
        todo.extend(children.get(p, []))
    return total


def named_cpu_s(name: str, procs: Mapping[int, ProcStat] | None = None) -> float | None:
    """CPU seconds of every process called ``name``; None when none runs."""
    procs = processes() if procs is None else procs
    used = [stat.cpu_s for stat in procs.values() if stat.name == name]
    return sum(used) if used else None


def machine_busy_s(stat: Path = PROC / "stat") -> float:
    """CPU seconds the whole machine spent busy so far (all cores; not idle, not iowait)."""
    fields = [int(x) for x in stat.read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def _keyed(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}


def container_cpu(container_id: str, root: Path = CGROUP) -> CpuReader | None:
    """A reader of one container's cgroup (its full id): cgroup v2 (``cpu.stat``) or v1
    (``cpuacct.usage`` and ``cpu.stat``), whichever the engine uses; None if neither is
    there (the container is gone, or the engine keeps its cgroups elsewhere)."""
    v2_dirs = (
        root / "system.slice" / f"docker-{container_id}.scope",
        root / "docker" / container_id,
    )
    for v2 in v2_dirs:
        if (v2 / "cpu.stat").exists() and "usage_usec" in (v2 / "cpu.stat").read_text():

            def read_v2(directory: Path = v2) -> CpuTime:
                s = _keyed(directory / "cpu.stat")
                return CpuTime(s["usage_usec"] / US_PER_S, s.get("throttled_usec", 0) / US_PER_S)

            return read_v2
    acct = root / "cpuacct" / "docker" / container_id / "cpuacct.usage"
    cpu = root / "cpu" / "docker" / container_id / "cpu.stat"
    if acct.exists() and cpu.exists():

        def read_v1() -> CpuTime:
            return CpuTime(
                int(acct.read_text()) / NS_PER_S, _keyed(cpu).get("throttled_time", 0) / NS_PER_S
            )

        return read_v1
    return None


def process_reader(pid: int) -> CpuReader:
    return lambda: CpuTime(process_cpu_s(pid))


def machine_reader() -> CpuReader:
    return lambda: CpuTime(machine_busy_s())


def named_reader(name: str) -> CpuReader:
    """Processes called ``name``; none running reads as 0."""
    return lambda: CpuTime(named_cpu_s(name) or 0.0)


def summed(readers: Sequence[CpuReader]) -> CpuReader:
    """Several subjects as one (a service's containers); one that cannot be read any
    more (a container gone) counts nothing."""

    def read() -> CpuTime:
        used = throttled = 0.0
        for reader in readers:
            try:
                u, t = reader()
            except OSError:
                continue
            used, throttled = used + u, throttled + t
        return CpuTime(used, throttled)

    return read


class CpuMeter:
    """CPU each named subject used since the meter was made: ``CpuMeter({"api":
    process_reader(pid), "machine": machine_reader()}).used()`` after the run."""

    def __init__(self, readers: Mapping[str, CpuReader]) -> None:
        self._readers = dict(readers)
        self._start = self._read()

    def _read(self) -> dict[str, CpuTime]:
        return {name: read() for name, read in self._readers.items()}

    def used(self) -> dict[str, CpuTime]:
        end = self._read()
        return {
            name: CpuTime(
                end[name].used_s - self._start[name].used_s,
                end[name].throttled_s - self._start[name].throttled_s,
            )
            for name in end
        }

    def used_s(self) -> dict[str, float]:
        return {name: t.used_s for name, t in self.used().items()}


SPEED_PROBE_LOOPS = 30_000_000
"""A fixed pure-Python loop: ``sum(range(30_000_000))``."""


def speed_probe_s() -> float:
    """CPU seconds the fixed loop takes now: how fast this machine's cores are at the
    moment. On the development VM the same loop took 0.34 s at one moment and 0.60-0.69 s
    minutes later (a host shared with others), and every CPU-bound figure moved with it;
    a benchmark prints the probe beside its figures so they can be read against it."""
    started = self_cpu_s()
    sum(range(SPEED_PROBE_LOOPS))
    return self_cpu_s() - started
