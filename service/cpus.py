"""How many CPUs this process may really use: its CPU affinity and its cgroup's quota.

``os.cpu_count()`` counts the host's CPUs. A container limited to one CPU (compose's
``cpus: "1"``, a Kubernetes limit) on a 16-core host would start 16 api processes that
then take turns on one CPU's worth of time, each holding its own Redis connections and
memory. What the kernel lets the process run on is the smaller of two limits: the CPUs
it may be scheduled on (``sched_getaffinity``, set by cpusets and ``taskset``) and the
CFS bandwidth of its cgroup and every ancestor cgroup (``cpu.max`` in cgroup v2,
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` in v1).

A fractional quota is rounded up (1.5 CPUs: 2 processes), as the JVM and .NET do: with
one process the half CPU the task pays for would stay idle.

Fargate may show a task more CPUs than its size and set the limit outside the
container's view, so Terraform states the api's process count instead of relying on
this (``QF_API_PROCESSES``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

PROC_SELF = Path("/proc/self")


@dataclass(frozen=True)
class _Mount:
    root: str  # the hierarchy's path mounted there
    point: Path
    version: int  # 1 or 2


def _mounts(mountinfo: str) -> dict[int, _Mount]:
    """The cgroup v2 mount and the v1 mount that carries the ``cpu`` controller."""
    found: dict[int, _Mount] = {}
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        fstype, options = tail[0], tail[2].split(",")
        if fstype == "cgroup2":
            found.setdefault(2, _Mount(fields[3], Path(fields[4]), 2))
        elif fstype == "cgroup" and "cpu" in options:
            found.setdefault(1, _Mount(fields[3], Path(fields[4]), 1))
    return found


def _paths(cgroup: str) -> dict[int, str]:
    """This process's cgroup path per version (v1: the hierarchy with ``cpu``)."""
    paths: dict[int, str] = {}
    for line in cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            paths.setdefault(2, path)
        elif "cpu" in controllers.split(","):
            paths.setdefault(1, path)
    return paths


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _limit_at(directory: Path, version: int) -> float | None:
    """CPUs allowed by this one cgroup, or None when it sets no limit."""
    if version == 2:
        text = _read(directory / "cpu.max")
        if text is None:
            return None
        quota, _, period = text.partition(" ")
        if quota == "max":
            return None
        return int(quota) / int(period or "100000")
    quota_text = _read(directory / "cpu.cfs_quota_us")
    period_text = _read(directory / "cpu.cfs_period_us")
    if quota_text is None or period_text is None or int(quota_text) <= 0:
        return None
    return int(quota_text) / int(period_text)


def cgroup_cpu_limit(proc: Path = PROC_SELF, root: Path = Path("/")) -> float | None:
    """CPUs the cgroup quota allows (the strictest of the process's cgroup and its
    ancestors that are visible), or None when there is no quota.

    ``root`` prefixes every mount point (tests build a fake tree)."""
    mounts = _mounts(_read(proc / "mountinfo") or "")
    paths = _paths(_read(proc / "cgroup") or "")
    for version in (2, 1):
        if version not in mounts or version not in paths:
            continue
        mount, path = mounts[version], paths[version]
        point = root / mount.point.relative_to("/")
        # the cgroup path is relative to the hierarchy's root; the mount shows the part
        # of the hierarchy below mount.root (a container sees its own cgroup as "/")
        inside = mount.root == "/" or path == mount.root or path.startswith(mount.root + "/")
        # levels that are not visible here read as no limit: the walk reaches the mount
        directory = point / os.path.relpath(path, mount.root) if inside else point
        limits: list[float] = []
        while True:
            limit = _limit_at(directory, version)
            if limit is not None:
                limits.append(limit)
            if directory == point:
                break
            directory = directory.parent
        return min(limits) if limits else None
    return None


def available_cpus(proc: Path = PROC_SELF, root: Path = Path("/")) -> int:
    """Whole CPUs this process can use: affinity, capped by the cgroup quota rounded up."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cpus = affinity or os.cpu_count() or 1
    limit = cgroup_cpu_limit(proc, root)
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return cpus
