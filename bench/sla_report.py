"""The SLA benchmark's output: the seed's table side by side, the overload rows, the plot.

Markdown tables, so a run's output can be pasted into docs/benchmarks.md as it is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.sla_stats import LevelSummary, Target, overload_targets

PATH_LABELS = {
    "old": "old architecture (straight to the backend)",
    "queued": "queuefront, queued route",
    "cached": "queuefront, cached route",
}


@dataclass
class Capacity:
    """Measured with closed-loop clients before the levels."""

    backend_nominal_per_s: float
    backend_measured_per_s: float
    queued_measured_per_s: float


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def _s(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def seed_table(
    paths: Sequence[str], levels: Sequence[int], rows: dict[tuple[str, int], LevelSummary]
) -> list[str]:
    """Level, then per path: sent, answered 2xx, p50, p99, last answer, PASS/FAIL."""
    head = ["level /min"]
    for path in paths:
        head += [f"{path}: sent", "2xx", "p50 ms", "p99 ms", "last s", "result"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for level in levels:
        cells = [f"{level:,}"]
        for path in paths:
            row = rows.get((path, level))
            if row is None:
                cells += ["-", "-", "-", "-", "-", "not run"]
                continue
            cells += [
                f"{row.sent:,}",
                f"{row.ok:,}",
                _ms(row.p50_ms),
                _ms(row.p99_ms),
                _s(row.last_answer_s),
                f"**{row.verdict}**",
            ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def others_table(
    paths: Sequence[str], levels: Sequence[int], rows: dict[tuple[str, int], LevelSummary]
) -> list[str]:
    """What the requests that were not 2xx got, per path and level."""
    out = [
        "| level /min | " + " | ".join(f"{p}: not 2xx" for p in paths) + " |",
        "|" + "---|" * (len(paths) + 1),
    ]
    for level in levels:
        cells = [f"{level:,}"]
        for path in paths:
            row = rows.get((path, level))
            cells.append("not run" if row is None else row.others())
        out.append("| " + " | ".join(cells) + " |")
    return out


def overload_table(overload: Sequence[LevelSummary], capacity_per_s: float) -> list[str]:
    out = [
        "| path | offered /s | goodput /s | of capacity | answers | p99 of 503s ms "
        "| 504 share | targets |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in overload:
        answers = ", ".join(f"{o}: {c:,}" for o, c in sorted(row.outcomes.items()))
        # not the level's PASS/FAIL: refusing the excess with 503s is the point here
        targets = overload_targets(row, capacity_per_s)
        met = sum(t.met for t in targets)
        out.append(
            f"| {row.path} | {row.offered_per_s:,.0f} | {row.goodput_per_s:,.0f} "
            f"| {row.goodput_per_s / capacity_per_s:.0%} | {answers} "
            f"| {_ms(row.p99_503_ms)} | {row.share('504'):.2%} | {met} of {len(targets)} met |"
        )
    return out


def targets_lines(targets: Sequence[Target]) -> list[str]:
    return [f"- [{'x' if t.met else ' '}] {t.name}: {t.measured}" for t in targets]


def cpu_table(rows: Sequence[LevelSummary]) -> list[str]:
    """Cores each process used during a level, and the generator's own cost and lateness.

    Dispatch lag: how late the generator handed due requests on (its own lateness); send
    lag: how late they were written, which also includes opening a new connection.
    """
    procs = sorted({p for r in rows for p in r.cpu_cores})
    out = [
        "| path | level /min | load avg | "
        + " | ".join(procs)
        + " | generator µs/req | dispatch lag p99 ms | send lag p99 ms | connections |",
        "|" + "---|" * (len(procs) + 7),
    ]
    for r in rows:
        cores = " | ".join(f"{r.cpu_cores.get(p, math.nan):.2f}" for p in procs)
        out.append(
            f"| {r.path} | {r.level_per_min:,} | {r.load_average:.2f} | {cores} "
            f"| {r.gen_cpu_us_per_request:.0f} | {r.dispatch_lag_p99_ms:.1f} "
            f"| {r.send_lag_p99_ms:.1f} "
            f"| {r.connections_opened:,} |"
        )
    return out


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")


def plot(
    paths: Sequence[str],
    rows: Sequence[LevelSummary],
    capacity_per_s: float,
    targets: Sequence[Path],
) -> None:
    """Goodput and p99 against offered load (per minute, like the table's levels), one
    line per path, the overload rows included; a filled marker is a level that PASSED."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, (ax_good, ax_p99) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    for path in paths:
        series = sorted((r for r in rows if r.path == path), key=lambda r: r.offered_per_s)
        if not series:
            continue
        offered = [r.offered_per_s * 60 for r in series]
        label = PATH_LABELS.get(path, path)
        (line,) = ax_good.plot(offered, [r.goodput_per_s * 60 for r in series], label=label)
        color = line.get_color()
        ax_p99.plot(offered, [r.p99_ms for r in series], color=color, label=label)
        for x, r in zip(offered, series, strict=True):
            face = color if r.passed else "white"
            ax_good.plot(x, r.goodput_per_s * 60, "o", color=color, mfc=face)
            if not math.isnan(r.p99_ms):
                ax_p99.plot(x, r.p99_ms, "o", color=color, mfc=face)
    xs = [r.offered_per_s * 60 for r in rows] or [1.0]
    ax_good.plot([min(xs), max(xs)], [min(xs), max(xs)], ":", color="grey", label="all served")
    ax_good.axhline(
        capacity_per_s * 60, ls="--", color="grey", lw=0.8, label="queued route's capacity"
    )
    per_min = FuncFormatter(lambda v, _: f"{v:,.0f}")
    for ax in (ax_good, ax_p99):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(per_min)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(per_min)
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("offered load (requests/min, evenly spaced)")
        ax.grid(True, which="both", alpha=0.3)
    ax_good.set_ylabel("goodput (2xx answers/min)")
    ax_good.set_title("Goodput (filled marker: the level PASSED)")
    ax_p99.set_ylabel("p99 latency of 2xx answers (ms)")
    ax_p99.set_title("p99 latency, from each request's scheduled time")
    ax_good.legend(fontsize=8)
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, dpi=110)
    plt.close(fig)
