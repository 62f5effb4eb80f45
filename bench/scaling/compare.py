"""``python -m bench.scaling.compare [--before REV] [--out DIR] [SCENARIO ...]``: the
shipped scenarios run on an earlier policy and on today's, side by side.

For each scenario (default: every file of bench/scaling/scenarios) three runs:

- **before**: ``deploy/terraform`` as it was at git revision ``REV`` (read with ``git
  archive``, never checked out) with its own ``examples/production.tfvars``; the
  scenario's ``[terraform]`` table is left out (it names today's variables);
- **after**: the work tree's policy and the scenario as shipped (with the capacity it
  schedules for a known event, if it does);
- **reactive**: the same without scheduled events (``scaling_events = {}``): what the
  dynamic policies do alone;
- **direct** (scenarios with votes only): as shipped with ``ingest_direct = true``, the
  votes sent by API Gateway straight to the ingest queue.

It prints the Markdown table of docs/benchmarks.md ("Scaling"), and writes per scenario
``DIR/<scenario>.png`` (before and after: load and what was answered, tasks, refusals)
and ``DIR/results.json`` (the table's figures). Every run has the same simulator,
measured figures and AWS constants: only the policy differs.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.scaling import scenario
from bench.scaling.run import Run, simulate
from bench.scaling.terraform import ROOT

SCENARIOS_DIR = ROOT / "bench" / "scaling" / "scenarios"
DEFAULT_BEFORE = "bac881e"
"""main before the pods' scaling signal, the fast alarms and scheduled events."""
POLICIES = ("before", "after", "reactive", "direct")


def terraform_at(rev: str, dest: Path) -> Path:
    """``deploy/terraform`` of git revision ``rev``, unpacked under ``dest``, beside the
    route table its image shipped (``config/routes.toml``: where cached misses wait)."""
    done = subprocess.run(
        ["git", "archive", rev, "deploy/terraform", "config/routes.toml"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"git revision {rev} is not in this clone's history (a shallow clone?): "
            f"fetch it, or pass another --before ({done.stderr.decode().strip()})"
        )
    archive = done.stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "deploy" / "terraform"


def run_all(path: Path, before_tf: Path) -> dict[str, Run]:
    sc = scenario.load(path)
    tfvars = before_tf / "examples" / "production.tfvars"
    runs = {
        "before": simulate(replace(sc, terraform={}), None, before_tf, tfvars),
        "after": simulate(sc),
        "reactive": simulate(sc, {"scaling_events": {}}),
    }
    if any(p.rps["ingest"] > 0 for p in sc.load):
        runs["direct"] = simulate(sc, {"ingest_direct": True})
    return runs


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def summary(r: dict[str, Any]) -> dict[str, Any]:
    """The table's figures of one run."""
    q = r["offered"]["queued"]
    checks = r["criteria"]["checks"]
    return {
        "queued_answered_pct": _pct(r["answered"]["queued"], q),
        "queued_shed_pct": _pct(r["shed"]["queued"], q),
        "queued_504_pct": _pct(r["timed_out"], q),
        "cached_pct": _pct(r["answered"]["cached"], r["offered"]["cached"]),
        "edge_pct": _pct(r["answered"]["edge"], r["offered"]["edge"]),
        "votes_pct": _pct(r["answered"]["ingest"], r["offered"]["ingest"]),
        "goodput": checks["goodput"]["detail"],
        "first_scale_out_s": r["first_scale_out_s"],
        "first_scale_decision_s": r["first_scale_decision_s"],
        "peak_tasks": r["peak_tasks"],
        "task_hours": r["task_hours"],
        "cost_usd": r["cost_usd"],
        "api_gateway": r["edge"]["api"],
        "lost": r["lost"],
        "criteria_ok": r["criteria"]["ok"],
        "failed": [name for name, c in checks.items() if not c["ok"]],
    }


def _cell(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    head = (
        "| scenario | policy | queued answered / shed / 504 % | cached % | edge % | votes % "
        "| first scale-out decided / serving s | peak api/worker/writer | Fargate $ "
        "| AWS $ | criteria |"
    )
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for name, by_policy in results.items():
        for policy in POLICIES:
            if policy not in by_policy:
                continue
            s = by_policy[policy]
            peak = s["peak_tasks"]
            lines.append(
                f"| {name} | {policy} "
                f"| {_cell(s['queued_answered_pct'])} / {_cell(s['queued_shed_pct'])} / "
                f"{_cell(s['queued_504_pct'])} "
                f"| {_cell(s['cached_pct'])} | {_cell(s['edge_pct'])} | {_cell(s['votes_pct'])} "
                f"| {_cell(s['first_scale_decision_s'])} / {_cell(s['first_scale_out_s'])} "
                f"| {peak['api']}/{peak['worker']}/{peak['writer']} "
                f"| {s['cost_usd']['fargate']:.2f} | {s['cost_usd']['total']:.2f} "
                f"| {'met' if s['criteria_ok'] else 'not met: ' + ', '.join(s['failed'])} |"
            )
    return "\n".join(lines)


def plot(name: str, runs: dict[str, Run], out: Path) -> None:
    """Before, reactive and after, side by side: load and what was answered, tasks,
    refusals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 3, figsize=(15, 8), sharex=True, sharey="row")
    fig.suptitle(f"{name}: the policy before, reactive only, and with its scheduled event")
    for col, policy in enumerate(("before", "reactive", "after")):
        sim = runs[policy].sim
        s, dt = sim.series, sim.dt
        per = max(1, round(10.0 / dt))
        t = [s.t[i] / 60 for i in range(0, len(s.t), per)]

        def rate(values: list[int], per: int = per, dt: float = dt) -> list[float]:
            return [sum(values[i : i + per]) / (per * dt) for i in range(0, len(values), per)]

        ax = axes[0][col]
        ax.set_title(policy)
        ax.plot(t, rate(s.backend_offered), label="needs the backend")
        ax.plot(t, rate(s.backend_answered), "--", label="answered in its window")
        for cls in ("cached", "edge", "ingest"):
            if sum(s.offered[cls]):
                ax.plot(t, rate(s.offered[cls]), alpha=0.5, label=f"{cls} offered")
        cap = [sum(s.backend_capacity_rps[i : i + per]) / per for i in range(0, len(s.t), per)]
        ax.plot(t, cap, ":", color="grey", label="backend capacity")
        ax.set_yscale("symlog", linthresh=10)
        ax.set_ylabel("requests/s")
        ax.legend(fontsize="x-small", ncol=2)

        ax = axes[1][col]
        for svc in ("api", "worker", "writer"):
            ax.step([x / 60 for x in s.t], s.running[svc], where="post", label=f"{svc}")
        ax.set_ylabel("tasks serving")
        ax.legend(fontsize="x-small")

        ax = axes[2][col]
        for cls in ("queued", "cached", "edge", "ingest"):
            shed = rate(s.shed[cls])
            if any(shed):
                ax.plot(t, shed, label=f"{cls} refused")
        ax.set_ylabel("refused/s")
        ax.set_xlabel("minutes")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling.compare", description=__doc__)
    parser.add_argument("scenarios", nargs="*", type=Path)
    parser.add_argument("--before", default=DEFAULT_BEFORE, help="git revision of the old policy")
    parser.add_argument("--out", type=Path, help="write DIR/<scenario>.png and DIR/results.json")
    args = parser.parse_args(argv)
    paths = args.scenarios or sorted(SCENARIOS_DIR.glob("*.toml"))
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        before_tf = terraform_at(args.before, Path(tmp))
        for path in paths:
            runs = run_all(path, before_tf)
            name = runs["after"].result["scenario"]
            results[name] = {p: summary(runs[p].result) for p in POLICIES if p in runs}
            if args.out:
                plot(name, runs, args.out / f"{name}.png")
    print(table(results))
    if args.out:
        doc = {"before": args.before, "scenarios": results}
        (args.out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
