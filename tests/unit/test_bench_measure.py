"""bench.measure: the one percentile and the CPU readers every benchmark uses."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.measure import (
    CLK_TCK,
    CpuMeter,
    CpuTime,
    ProcStat,
    container_cpu,
    machine_busy_s,
    named_cpu_s,
    parse_stat,
    percentile,
    process_cpu_s,
    process_reader,
    processes,
    self_cpu_s,
    summed,
)

BURN_S = 0.3
"""CPU a child process burns where a test needs some; well above one clock tick (10 ms)."""


def burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


# --- percentile --------------------------------------------------------------------------


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted: 100 .. 1
    assert percentile(values, 0.50) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile(values, 0.0) == 1  # rank 1 at the bottom, never index -1
    # always a measured value, never an interpolation: rank ceil(0.9 * 4) = 4 of 4
    assert percentile([1.0, 2.0, 3.0, 10.0], 0.9) == 10.0
    assert percentile([1.0, 2.0, 3.0, 10.0], 0.5) == 2.0
    assert percentile([7.0], 0.99) == 7.0


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 0.5))


# --- /proc ---------------------------------------------------------------------------------


def test_parse_stat_takes_the_fields_after_the_last_bracket() -> None:
    # a command name with spaces and brackets of its own; utime 150, stime 50 ticks
    fields = ["S", "42"] + ["0"] * 9 + [str(150), str(50)] + ["0"] * 30
    stat = parse_stat(f"1234 (we (i) rd) {' '.join(fields)}")
    assert stat == ProcStat("we (i) rd", 42, 200 / CLK_TCK)


def test_process_cpu_counts_the_process_and_its_descendants() -> None:
    """A parent that burns nothing itself, and a grandchild that does: the tree's CPU is
    the parent's figure, because an api with several processes is such a tree."""
    code = (
        "import subprocess, sys, time;"
        "child = subprocess.Popen([sys.executable, '-c', "
        f"'import time\\nend = time.process_time() + {BURN_S}\\n"
        "while time.process_time() < end: pass\\ntime.sleep(30)']);"
        "time.sleep(30)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 20
        while process_cpu_s(parent.pid) < BURN_S * 0.9 and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = process_cpu_s(parent.pid)
        assert tree >= BURN_S * 0.9
        own = Path(f"/proc/{parent.pid}/stat").read_text()
        assert parse_stat(own).cpu_s < tree  # the grandchild's CPU is in the figure
    finally:
        for pid, stat in processes().items():
            if stat.parent == parent.pid:
                os.kill(pid, signal.SIGKILL)  # the child it started
        parent.kill()
        parent.wait()


def test_a_process_that_is_gone_reads_nan() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid is free
    assert math.isnan(process_cpu_s(gone.pid))


def test_process_cpu_from_a_snapshot() -> None:
    procs = {
        10: ProcStat("api", 1, 1.0),
        11: ProcStat("api", 10, 2.0),
        12: ProcStat("api", 10, 3.0),
        13: ProcStat("worker", 1, 4.0),
        14: ProcStat("sh", 12, 0.5),
    }
    assert process_cpu_s(10, procs) == 6.5
    assert process_cpu_s(13, procs) == 4.0
    assert named_cpu_s("api", procs) == 6.0
    assert named_cpu_s("nginx", procs) is None


def test_self_cpu_and_the_meter_see_work_done() -> None:
    before = self_cpu_s()
    meter = CpuMeter({"self": process_reader(os.getpid())})
    burn(BURN_S)
    assert self_cpu_s() - before >= BURN_S
    # /proc counts in clock ticks: the meter's figure is within one or two of it
    assert meter.used_s()["self"] == pytest.approx(BURN_S, abs=0.1)


def test_machine_busy_counts_everything_but_idle_and_iowait(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text(
        f"cpu  {' '.join(str(x * CLK_TCK) for x in (1, 2, 3, 100, 50, 4, 5, 6, 7, 8))}\n"
    )
    assert machine_busy_s(stat) == 1 + 2 + 3 + 4 + 5 + 6
    assert machine_busy_s() > 0  # the real one reads


# --- cgroups ---------------------------------------------------------------------------------


def test_container_cpu_reads_cgroup_v2(tmp_path: Path) -> None:
    scope = tmp_path / "system.slice" / "docker-abc.scope"
    scope.mkdir(parents=True)
    (scope / "cpu.stat").write_text(
        "usage_usec 2500000\nuser_usec 2000000\nthrottled_usec 500000\n"
    )
    read = container_cpu("abc", root=tmp_path)
    assert read is not None
    assert read() == CpuTime(2.5, 0.5)


def test_container_cpu_reads_cgroup_v1(tmp_path: Path) -> None:
    acct = tmp_path / "cpuacct" / "docker" / "abc"
    cpu = tmp_path / "cpu" / "docker" / "abc"
    acct.mkdir(parents=True)
    cpu.mkdir(parents=True)
    (acct / "cpuacct.usage").write_text("3000000000\n")
    (cpu / "cpu.stat").write_text("nr_periods 10\nnr_throttled 2\nthrottled_time 250000000\n")
    read = container_cpu("abc", root=tmp_path)
    assert read is not None
    assert read() == CpuTime(3.0, 0.25)


def test_a_container_without_a_cgroup_has_no_reader(tmp_path: Path) -> None:
    assert container_cpu("abc", root=tmp_path) is None


def test_a_service_sums_its_containers_and_skips_one_that_is_gone() -> None:
    def gone() -> CpuTime:
        raise FileNotFoundError("cpu.stat")

    both = summed([lambda: CpuTime(1.0, 0.25), gone, lambda: CpuTime(2.0)])
    assert both() == CpuTime(3.0, 0.25)


def test_the_meter_reports_differences_per_subject() -> None:
    clock = {"a": CpuTime(1.0, 0.0), "b": CpuTime(5.0, 1.0)}
    meter = CpuMeter({"a": lambda: clock["a"], "b": lambda: clock["b"]})
    clock["a"], clock["b"] = CpuTime(1.5, 0.0), CpuTime(7.0, 1.5)
    assert meter.used() == {"a": CpuTime(0.5, 0.0), "b": CpuTime(2.0, 0.5)}
    assert meter.used_s() == {"a": 0.5, "b": 2.0}
