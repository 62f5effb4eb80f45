"""``--plot``: load, tasks per service, backlog, shed and latency over time (matplotlib,
off-screen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from bench.scaling.ledger import weighted_percentile
from bench.scaling.scenario import CLASSES
from bench.scaling.sim import Simulation

BIN_S = 10.0
"""Rates and latencies are drawn per 10 s."""


def _binned(values: list[int], per: int, dt: float) -> list[float]:
    return [sum(values[i : i + per]) / (per * dt) for i in range(0, len(values), per)]


def plot(sim: Simulation, result: dict[str, Any], out: Path) -> None:
    s, dt = sim.series, sim.dt
    per = max(1, round(BIN_S / dt))
    minutes = [s.t[i] / 60 for i in range(0, len(s.t), per)]
    fig, axes = plt.subplots(5, 1, figsize=(11, 14), sharex=True)
    title = f"{result['scenario']}" + (f" — {result['overrides']}" if result["overrides"] else "")
    fig.suptitle(title)

    ax = axes[0]
    for c in CLASSES:
        if result["offered"][c]:
            ax.plot(minutes, _binned(s.offered[c], per, dt), label=f"{c} offered")
    ax.plot(minutes, _binned(s.answered["queued"], per, dt), "--", label="queued answered")
    ax.plot(
        minutes,
        [sum(s.backend_capacity_rps[i : i + per]) / per for i in range(0, len(s.t), per)],
        ":",
        color="grey",
        label="backend capacity",
    )
    ax.set_ylabel("requests/s")
    ax.set_yscale("symlog", linthresh=10)
    ax.legend(fontsize="small", ncol=3)

    ax = axes[1]
    for name in ("api", "worker", "writer"):
        (line,) = ax.step(
            [t / 60 for t in s.t], s.running[name], where="post", label=f"{name} serving"
        )
        ax.step(
            [t / 60 for t in s.t],
            s.desired[name],
            where="post",
            linestyle=":",
            color=line.get_color(),
            label=f"{name} desired",
        )
    ax.set_ylabel("tasks")
    ax.legend(fontsize="small", ncol=3)

    ax = axes[2]
    for q in ("high", "normal", "ingest"):
        ax.plot([t / 60 for t in s.t], s.backlog[q], label=f"{q} messages")
    ax.set_ylabel("queue backlog")
    ax.set_yscale("symlog", linthresh=10)
    ax.legend(fontsize="small")

    ax = axes[3]
    for c in CLASSES:
        if result["shed"][c]:
            ax.plot(minutes, _binned(s.shed[c], per, dt), label=f"{c} shed")
    ax.set_ylabel("shed/s")
    if any(result["shed"].values()):
        ax.legend(fontsize="small")

    ax = axes[4]
    p50, p99 = [], []
    for i in range(0, len(s.t), per):
        samples = [x for chunk in s.latencies[i : i + per] for x in chunk]
        p50.append(weighted_percentile(samples, 0.5) or float("nan"))
        p99.append(weighted_percentile(samples, 0.99) or float("nan"))
    ax.plot(minutes, p50, label="queued p50")
    ax.plot(minutes, p99, label="queued p99")
    ax.axhline(sim.window_s, color="grey", linestyle=":", label="reply window")
    ax.set_ylabel("latency s")
    ax.set_xlabel("minutes")
    ax.legend(fontsize="small")

    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
