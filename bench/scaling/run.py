"""One run from a scenario file: the policy with its overrides, the figures, the
constants, the simulation, its result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.scaling import report, scenario
from bench.scaling.aws import DEFAULT as AWS_DEFAULT
from bench.scaling.figures import FIGURES_PATH, ThroughputFigures
from bench.scaling.model import ModelConstants
from bench.scaling.scenario import ROUTE_TABLE
from bench.scaling.sim import Simulation
from bench.scaling.terraform import TERRAFORM_DIR, TFVARS, load_policy

_FIGURES_CACHE: dict[Path, ThroughputFigures] = {}


@dataclass
class Run:
    sim: Simulation
    result: dict[str, Any]


def simulate(
    sc: scenario.Scenario,
    overrides: Mapping[str, Any] | None = None,
    terraform_dir: Path = TERRAFORM_DIR,
    tfvars: Path | None = TFVARS,
) -> Run:
    """``overrides`` (``--set``) win over the scenario's ``[terraform]`` table."""
    merged = {**sc.terraform, **(overrides or {})}
    policy = load_policy(merged, terraform_dir, tfvars)
    model = ModelConstants().with_overrides(dict(sc.model))
    path = Path(model.figures) if model.figures else FIGURES_PATH
    if path not in _FIGURES_CACHE:
        _FIGURES_CACHE[path] = ThroughputFigures.load(path)
    aws = AWS_DEFAULT.with_overrides(dict(sc.aws))
    # the route table deployed with this Terraform (its repository's, or an archived
    # revision's: bench.scaling.compare), else today's
    routes = terraform_dir.parents[1] / "config" / "routes.toml"
    sim = Simulation(
        sc, policy, _FIGURES_CACHE[path], aws, model, routes if routes.is_file() else ROUTE_TABLE
    )
    sim.run()
    return Run(sim, report.result(sim, dict(merged)))


def simulate_file(path: Path, overrides: Mapping[str, Any] | None = None) -> Run:
    return simulate(scenario.load(path), overrides)
