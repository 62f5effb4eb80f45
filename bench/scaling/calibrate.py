"""``python -m bench.scaling.calibrate [--measured SUMMARY.json] [--backend measured|configured]
[--json]``: the simulator against ``make sla`` on this machine.

Runs the simulator configured as the SLA benchmark runs this machine
(bench/scaling/machine.py: one api process, one worker with the benchmark's slots, the
benchmark's demo backend, no autoscaling) at every level of a recorded ``make sla`` run and
its overload row, on the paths the simulator can express (queued, cached; not the old
architecture), and prints predicted beside measured: goodput, shed share (503s) and the
p99 of the 2xx answers, each with the ratio predicted ÷ measured. A level agrees when
goodput and shed share are within ``AGREEMENT`` of the measured figures.

The measured side is a run's ``summary.json`` (``bench/results/sla-<time>/``, which every
``make sla`` writes); by default the run recorded in docs/benchmarks.md
(``bench/scaling/measured/sla-9100583.json``, that run's own summary; the earlier
``sla-3c029eb.json`` is transcribed from its tables). The
benchmark's settings are that run's own (its ``args``, or its command line parsed by
``bench.sla``'s parser). The demo backend's per-call time is its workers ÷ a capacity that
run measured before its levels (``--backend``, ``BACKEND_CHOICES``): the backend's own
(the default), the queued route's, or the service time it was started with. Disagreement
is reported, not an error: the exit status is non-zero only when the run cannot be read or
simulated. The comparison and what the model lacks:
docs/scaling/calibration.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from bench import sla
from bench.scaling.figures import FiguresError, ThroughputFigures
from bench.scaling.hcl import TerraformError
from bench.scaling.machine import PATH_CLASS, MachineConstants, predict_level
from bench.sla_stats import LevelSummary

RECORDED = Path(__file__).resolve().parent / "measured" / "sla-9100583.json"
AGREEMENT = 0.20
"""Predicted within ±20 % of measured (issue 18 §2) on goodput and on shed share."""
SUMMARY_FIELDS = {f.name for f in fields(LevelSummary)}
BACKEND_CHOICES = {
    "measured": "its workers ÷ the backend's capacity the run measured first (closed loop, "
    "one client per worker)",
    "route": "its workers ÷ the queued route's capacity the run measured next (closed loop, "
    "128 clients, through the worker)",
    "configured": "the service time it was started with",
}
"""Where the demo backend's per-call time comes from (``--backend``)."""


class MeasuredError(ValueError):
    """The measured run cannot be read; the message says what is missing."""


@dataclass(frozen=True)
class MeasuredRun:
    """A ``make sla`` run as its summary.json records it."""

    source: str
    args: argparse.Namespace
    backend_measured_per_s: float
    queued_measured_per_s: float
    capacity_used_per_s: float
    levels: tuple[LevelSummary, ...]
    overload: tuple[LevelSummary, ...]

    @classmethod
    def load(cls, path: Path) -> MeasuredRun:
        try:
            raw = json.loads(path.read_text())
            if "args" in raw:  # a summary.json: the run's resolved arguments
                args = argparse.Namespace(**raw["args"])
            else:  # a transcription: its command line, parsed as the run parsed it
                args = sla.parse_args([str(a) for a in raw.get("argv", [])])
            # what the run's report states must be what its arguments give: bench.sla's
            # defaults may have moved since the run
            for name, value in raw.get("stated_args", {}).items():
                if getattr(args, name, None) != value:
                    raise MeasuredError(
                        f"{path}: the run had {name} = {value!r}, its arguments give "
                        f"{getattr(args, name, None)!r} (bench.sla's defaults changed?)"
                    )
            return cls(
                source=str(raw.get("source", path)),
                args=args,
                backend_measured_per_s=float(raw["capacity"]["backend_measured_per_s"]),
                queued_measured_per_s=float(raw["capacity"]["queued_measured_per_s"]),
                capacity_used_per_s=float(raw["capacity_used_per_s"]),
                levels=tuple(_summary(r) for r in raw["levels"]),
                overload=tuple(_summary(r) for r in raw.get("overload", [])),
            )
        except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise MeasuredError(f"{path}: not a make sla summary ({exc!r})") from exc

    def row(self, path: str, level: int) -> LevelSummary | None:
        return next((r for r in self.levels if r.path == path and r.level_per_min == level), None)

    @property
    def overload_level(self) -> int:
        """As bench.sla.run: twice the queued route's capacity, per minute."""
        return round(2 * self.capacity_used_per_s * 60)


def _summary(raw: dict[str, Any]) -> LevelSummary:
    return LevelSummary(**{k: v for k, v in raw.items() if k in SUMMARY_FIELDS})


def machine_constants(run: MeasuredRun, backend: str, step_s: float | None) -> MachineConstants:
    machine = MachineConstants()
    per_s = {"measured": run.backend_measured_per_s, "route": run.queued_measured_per_s}
    if backend in per_s:
        machine = replace(machine, backend_call_s=run.args.backend_workers / per_s[backend])
    if step_s is not None:
        machine = replace(machine, step_s=step_s)
    return machine


@dataclass(frozen=True)
class Comparison:
    path: str
    level_per_min: int
    overload: bool
    predicted: LevelSummary
    measured: LevelSummary | None

    @staticmethod
    def ratio(predicted: float, measured: float) -> float:
        if math.isnan(predicted) or math.isnan(measured):
            return math.nan
        if measured == 0:
            return 1.0 if predicted == 0 else math.inf
        return predicted / measured

    def goodput_ratio(self) -> float:
        m = self.measured
        return math.nan if m is None else self.ratio(self.predicted.goodput_per_s, m.goodput_per_s)

    def shed_ratio(self) -> float:
        m = self.measured
        return math.nan if m is None else self.ratio(self.predicted.share("503"), m.share("503"))

    def p99_ratio(self) -> float:
        m = self.measured
        return math.nan if m is None else self.ratio(self.predicted.p99_ms, m.p99_ms)

    @property
    def agrees(self) -> bool | None:
        """Goodput and shed share both within AGREEMENT; None when nothing was measured."""
        if self.measured is None:
            return None
        return all(abs(r - 1) <= AGREEMENT for r in (self.goodput_ratio(), self.shed_ratio()))


def compare(
    run: MeasuredRun, machine: MachineConstants, figures: ThroughputFigures
) -> list[Comparison]:
    """Every level of the run on every path the simulator expresses, then the overload
    row (the queued route's, the only one the simulator expresses)."""
    args = run.args
    out = []
    for path in [p for p in args.paths if p in PATH_CLASS]:
        for level in args.levels:
            predicted = predict_level(args, machine, path, level, figures)
            out.append(Comparison(path, level, False, predicted, run.row(path, level)))
    if not args.no_overload and "queued" in args.paths:
        level = run.overload_level
        measured = next((r for r in run.overload if r.path == "queued"), None)
        predicted = predict_level(args, machine, "queued", level, figures)
        out.append(Comparison("queued", level, True, predicted, measured))
    return out


def _num(value: float, fmt: str = ",.0f") -> str:
    return "-" if math.isnan(value) else format(value, fmt)


def _ms(value: float) -> str:
    """Milliseconds: whole ones, tenths below 10 (a cached answer's)."""
    return _num(value, ".1f" if value < 10 else ",.0f")


def _ratio(value: float) -> str:
    return "-" if math.isnan(value) else ("∞" if math.isinf(value) else f"{value:.2f}")


def table(rows: Sequence[Comparison]) -> list[str]:
    """Markdown: per path and level, measured / predicted / ratio of goodput (2xx/s),
    shed share (503s) and p99 of the 2xx answers, PASS on both sides, agreement."""
    out = [
        "| path | level /min | goodput /s meas. | pred. | ratio | shed % meas. | pred. | ratio "
        "| p99 ms meas. | pred. | ratio | PASS meas. / pred. | within 20 % |",
        "|" + "---|" * 13,
    ]
    for c in rows:
        m, p = c.measured, c.predicted
        nan = math.nan
        agrees = {None: "not run", True: "yes", False: "**no**"}[c.agrees]
        verdict = f"{m.verdict if m else '-'} / {p.verdict}" if not c.overload else "-"
        label = f"{c.level_per_min:,} (overload)" if c.overload else f"{c.level_per_min:,}"
        out.append(
            f"| {c.path} | {label} "
            f"| {_num(m.goodput_per_s if m else nan)} | {_num(p.goodput_per_s)} "
            f"| {_ratio(c.goodput_ratio())} "
            f"| {_num(100 * m.share('503') if m else nan, '.1f')} "
            f"| {_num(100 * p.share('503'), '.1f')} | {_ratio(c.shed_ratio())} "
            f"| {_ms(m.p99_ms if m else nan)} | {_ms(p.p99_ms)} | {_ratio(c.p99_ratio())} "
            f"| {verdict} | {agrees} |"
        )
    return out


def _clean(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else round(value, 4)


def as_json(run: MeasuredRun, machine: MachineConstants, rows: Sequence[Comparison]) -> Any:
    def side(s: LevelSummary | None) -> dict[str, Any] | None:
        if s is None:
            return None
        return {
            "n": s.n,
            "ok": s.ok,
            "outcomes": s.outcomes,
            "goodput_per_s": _clean(s.goodput_per_s),
            "shed_share": _clean(s.share("503")),
            "p50_ms": _clean(s.p50_ms),
            "p99_ms": _clean(s.p99_ms),
            "last_answer_s": _clean(s.last_answer_s),
            "passed": s.passed,
        }

    return {
        "measured_run": run.source,
        "machine": {
            "backend_call_s": machine.backend_call_s,
            "sqs_delivery_s": machine.sqs_delivery_s,
            "step_s": machine.step_s,
        },
        "agreement": AGREEMENT,
        "rows": [
            {
                "path": c.path,
                "level_per_min": c.level_per_min,
                "overload": c.overload,
                "measured": side(c.measured),
                "predicted": side(c.predicted),
                "ratio": {
                    "goodput": _clean(c.goodput_ratio()),
                    "shed_share": _clean(c.shed_ratio()),
                    "p99": _clean(c.p99_ratio()),
                },
                "agrees": c.agrees,
            }
            for c in rows
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaling.calibrate", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument(
        "--measured", type=Path, default=RECORDED, help=f"a make sla summary.json ({RECORDED})"
    )
    parser.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="measured",
        help="the demo backend's per-call time: "
        + "; ".join(f"{k}: {v}" for k, v in BACKEND_CHOICES.items()),
    )
    parser.add_argument("--step-s", type=float, help="simulation step (default 0.01)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        run = MeasuredRun.load(args.measured)
        machine = machine_constants(run, args.backend, args.step_s)
        rows = compare(run, machine, ThroughputFigures.load())
    except (MeasuredError, FiguresError, TerraformError, ValueError, OSError) as exc:
        print(f"bench.scaling.calibrate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(as_json(run, machine, rows), sys.stdout, indent=2)
        print()
        return 0
    call = machine.backend_call_s
    print(
        f"Measured: {run.source}\n\nBackend call: "
        + (f"{call * 1000:.1f} ms" if call else f"{run.args.backend_service_ms:g} ms")
        + f" ({BACKEND_CHOICES[args.backend]})"
        + f"; SQS delivery {machine.sqs_delivery_s * 1000:.0f} ms; step {machine.step_s} s. "
        "The old architecture is not simulated (bench/scaling/machine.py, PATH_CLASS).\n"
    )
    print("\n".join(table(rows)))
    disagree = [c for c in rows if c.agrees is False]
    print(
        f"\n{len(disagree)} of {sum(c.agrees is not None for c in rows)} measured rows outside "
        f"{AGREEMENT:.0%} on goodput or shed share"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
