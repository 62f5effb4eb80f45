"""How many api processes the default starts: CPU affinity capped by the cgroup quota,
read from a fake /proc and /sys tree laid out like a container's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.cpus import available_cpus, cgroup_cpu_limit

V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNTINFO = (
    "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 {root} /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
)


def tree(tmp_path: Path, mountinfo: str, cgroup: str, files: dict[str, str]) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mountinfo").write_text(mountinfo)
    (proc / "cgroup").write_text(cgroup)
    for name, text in files.items():
        path = tmp_path / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return proc


def test_v2_container_quota(tmp_path: Path) -> None:
    """compose's cpus: "1.5" (a container with its own cgroup namespace sees "/")."""
    proc = tree(tmp_path, V2_MOUNTINFO, "0::/\n", {"/sys/fs/cgroup/cpu.max": "150000 100000\n"})
    assert cgroup_cpu_limit(proc, tmp_path) == 1.5


def test_v2_no_quota(tmp_path: Path) -> None:
    proc = tree(tmp_path, V2_MOUNTINFO, "0::/\n", {"/sys/fs/cgroup/cpu.max": "max 100000\n"})
    assert cgroup_cpu_limit(proc, tmp_path) is None


def test_v2_the_strictest_ancestor_wins(tmp_path: Path) -> None:
    """A limit on the parent (the task) binds the child cgroup (the container) too."""
    proc = tree(
        tmp_path,
        V2_MOUNTINFO,
        "0::/task/container\n",
        {
            "/sys/fs/cgroup/cpu.max": "max 100000\n",
            "/sys/fs/cgroup/task/cpu.max": "100000 100000\n",
            "/sys/fs/cgroup/task/container/cpu.max": "400000 100000\n",
        },
    )
    assert cgroup_cpu_limit(proc, tmp_path) == 1.0


def test_v1_quota_under_a_mounted_subtree(tmp_path: Path) -> None:
    """Docker without a cgroup namespace: /proc/self/cgroup names the host's path, and
    the mount shows that path's directory at the mount point."""
    proc = tree(
        tmp_path,
        V1_MOUNTINFO.format(root="/docker/abc"),
        "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n",
        {
            "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "50000\n",
            "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cgroup_cpu_limit(proc, tmp_path) == 0.5


def test_a_path_not_visible_here_means_the_mount_is_our_cgroup(tmp_path: Path) -> None:
    """The process's cgroup path is the host's, but only its own cgroup is mounted."""
    proc = tree(
        tmp_path,
        V2_MOUNTINFO,
        "0::/system.slice/docker-abc.scope\n",
        {"/sys/fs/cgroup/cpu.max": "200000 100000\n"},
    )
    assert cgroup_cpu_limit(proc, tmp_path) == 2.0


def test_v1_unlimited(tmp_path: Path) -> None:
    proc = tree(
        tmp_path,
        V1_MOUNTINFO.format(root="/"),
        "4:cpu,cpuacct:/\n",
        {
            "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cgroup_cpu_limit(proc, tmp_path) is None


def test_no_cgroup_files(tmp_path: Path) -> None:
    proc = tree(tmp_path, "", "", {})
    assert cgroup_cpu_limit(proc, tmp_path) is None


@pytest.mark.parametrize(
    ("quota", "expected"),
    [("50000 100000", 1), ("100000 100000", 1), ("150000 100000", 2), ("max 100000", 2)],
)
def test_available_cpus_rounds_the_quota_up_and_caps_it_by_affinity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quota: str, expected: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1})
    proc = tree(tmp_path, V2_MOUNTINFO, "0::/\n", {"/sys/fs/cgroup/cpu.max": quota})
    assert available_cpus(proc, tmp_path) == expected


def test_affinity_caps_a_larger_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {3})
    proc = tree(tmp_path, V2_MOUNTINFO, "0::/\n", {"/sys/fs/cgroup/cpu.max": "800000 100000"})
    assert available_cpus(proc, tmp_path) == 1


def test_this_machine() -> None:
    """Whatever the machine, at least one and never more than the CPUs it may run on."""
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
