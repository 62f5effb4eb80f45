"""``python -m bench.scaling SCENARIO.toml [--set NAME=VALUE ...] [--json] [--plot OUT.png]``

Simulates the deployed system — CloudFront, API Gateway, the api tasks, SQS, the workers,
the legacy backend, the writers, and the autoscaling exactly as ``deploy/terraform``
configures it — on the load of a scenario file, with the per-request costs that
``python -m bench.throughput`` measured. ``--set`` overrides one Terraform variable for
the run (``--set worker_max_tasks=6``, ``--set settings.worker_concurrency=16``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.scaling.figures import FiguresError
from bench.scaling.hcl import TerraformError
from bench.scaling.report import table
from bench.scaling.run import simulate
from bench.scaling.scenario import ScenarioError, load
from bench.scaling.terraform import parse_override


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaling", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument("scenario", type=Path, help="scenario file (TOML)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a Terraform variable (dotted into objects: settings.batch_size=100)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--plot", type=Path, metavar="OUT.png", help="draw the run over time")
    args = parser.parse_args(argv)
    try:
        overrides = dict((".".join(path), value) for path, value in map(parse_override, args.set))
        run = simulate(load(args.scenario), overrides)
    except (ScenarioError, TerraformError, FiguresError, ValueError, OSError) as exc:
        print(f"bench.scaling: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(run.result, sys.stdout, indent=2)
        print()
    else:
        print(table(run.result))
    if args.plot:
        from bench.scaling.plot import plot

        plot(run.sim, run.result, args.plot)
        if not args.json:
            print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
