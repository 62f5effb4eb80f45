"""Proof that the deploy/terraform suite catches what a real regression would look like.

``python -m tests.terraform.mutate [NAME ...]`` copies the work tree to a scratch folder once
per mutation, applies the mutation (a literal edit that must match exactly once), runs the
suites that guard that part (`terraform test` of the touched modules, with the same offline
CLI configuration as the tests, and the Python checks against the code), and prints one line
per mutation: which suites failed. A mutation that no suite notices is a hole in the tests,
and the command exits 1. It is not part of `make test` (each mutation re-runs `terraform
test`, minutes in all): `make tf-mutations` runs it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.mutate import Edit
from tests.terraform import tfcli
from tests.terraform.tfmodel import REPO

TF = "deploy/terraform"


@dataclass(frozen=True)
class Mutation(Edit):
    suites: tuple[str, ...]
    """Module directories (relative to deploy/terraform; "." is the root) to `terraform test`."""
    pytest: tuple[str, ...] = ()
    """Python test files to run as well."""


MUTATIONS = [
    Mutation(
        "credentials dropped from CloudFront's cache key",
        f"{TF}/modules/edge/main.tf",
        "items = var.credential_headers",
        'items = ["X-Api-Key"]',
        ("modules/edge",),
    ),
    Mutation(
        "credential header dropped from the edge's list",
        f"{TF}/modules/edge/variables.tf",
        'default     = ["Authorization", "X-Api-Key"]',
        'default     = ["X-Api-Key"]',
        ("modules/edge",),
        ("tests/terraform/test_entrypoints.py",),
    ),
    Mutation(
        "worker's scaling target x1000",
        f"{TF}/modules/autoscaling/main.tf",
        "target_value       = local.worker_backlog_target",
        "target_value       = local.worker_backlog_target * 1000",
        ("modules/autoscaling",),
    ),
    Mutation(
        "DLQ alarm threshold at 1,000,000",
        f"{TF}/modules/queues/main.tf",
        """  comparison_operator = "GreaterThanThreshold"
  threshold           = 0""",
        """  comparison_operator = "GreaterThanThreshold"
  threshold           = 1000000""",
        ("modules/queues",),
    ),
    Mutation(
        "writer's from-zero alarm a no-op (value never 1)",
        f"{TF}/modules/autoscaling/main.tf",
        'expression  = "IF(visible > 0 AND in_flight == 0 AND FILL(desired, 0) == 0, 1, 0)"',
        'expression  = "IF(visible > 0 AND in_flight == 0 AND FILL(desired, 0) == 0, 0, 0)"',
        ("modules/autoscaling",),
    ),
    Mutation(
        "writer's from-zero alarm a no-op (no action)",
        f"{TF}/modules/autoscaling/main.tf",
        "alarm_actions       = [aws_appautoscaling_policy.writer_from_zero.arn]",
        "alarm_actions       = []",
        ("modules/autoscaling",),
    ),
    Mutation(
        "writer's from-zero keyed on running tasks, +1 steps (the ratchet)",
        f"{TF}/modules/autoscaling/main.tf",
        """    adjustment_type         = "ExactCapacity"
    cooldown                = 180""",
        """    adjustment_type         = "ChangeInCapacity"
    cooldown                = 180""",
        ("modules/autoscaling",),
    ),
    Mutation(
        "writer target per row (300,000 messages per task)",
        f"{TF}/examples/production.tfvars",
        "writer_processing_time_s    = 0.0175",
        "writer_processing_time_s    = 0.0001",
        (".",),
    ),
    Mutation(
        "backend bound without the deploy overlap",
        f"{TF}/modules/autoscaling/main.tf",
        "worker_peak_tasks         = ceil(var.worker_max_tasks"
        " * var.worker_deployment_maximum_percent / 100)",
        "worker_peak_tasks         = var.worker_max_tasks",
        ("modules/autoscaling",),
    ),
    Mutation(
        "§1: task commands as `python -m` behind the queuefront ENTRYPOINT",
        f"{TF}/modules/compute/main.tf",
        """    api     = { command = ["api"], size = "api" }
    worker  = { command = ["worker"], size = "worker" }
    writer  = { command = ["writer"], size = "writer" }
    migrate = { command = ["migrate"], size = "migrate" }""",
        """    api     = { command = ["python", "-m", "service"], size = "api" }
    worker  = { command = ["python", "-m", "workers.priority"], size = "worker" }
    writer  = { command = ["python", "-m", "workers.writer"], size = "writer" }
    migrate = { command = ["python", "-m", "queuefront.migrate"], size = "migrate" }""",
        ("modules/compute", "."),
        ("tests/terraform/test_entrypoints.py",),
    ),
    Mutation(
        "§1: worker and writer roles cover their main queues only (no DLQs)",
        f"{TF}/modules/compute/main.tf",
        '    worker  = { queues = { consume = ["high", "normal"] }, '
        'dlqs = { depth = ["high", "normal"] } }\n'
        '    writer  = { queues = { consume = ["ingest"] }, dlqs = { depth = ["ingest"] } }',
        """    worker  = { queues = { consume = ["high", "normal"] }, dlqs = {} }
    writer  = { queues = { consume = ["ingest"] }, dlqs = {} }""",
        ("modules/compute", "."),
        ("tests/terraform/test_queue_access.py",),
    ),
    Mutation(
        "queues back at 256 KiB",
        f"{TF}/modules/queues/main.tf",
        "      MaximumMessageSize            = var.max_message_bytes",
        "      MaximumMessageSize            = 262144",
        ("modules/queues",),
    ),
    Mutation(
        "the ALB forwards requests that skipped CloudFront",
        f"{TF}/modules/edge/main.tf",
        """      values           = local.origin_secrets_allowed""",
        """      values           = ["*"]""",
        ("modules/edge",),
    ),
    Mutation(
        "RDS pinned to a minor version",
        f"{TF}/modules/database/variables.tf",
        '''  default     = "16"''',
        '''  default     = "16.4"''',
        ("modules/database",),
    ),
    # --- scaling (issue 18 §3) -----------------------------------------------------------
    Mutation(
        "scaling: the writer's from-zero alarm without the in-flight guard (FILL hazard)",
        f"{TF}/modules/autoscaling/main.tf",
        '"IF(visible > 0 AND in_flight == 0 AND FILL(desired, 0) == 0, 1, 0)"',
        '"IF(visible > 0 AND FILL(desired, 0) == 0, 1, 0)"',
        ("modules/autoscaling",),
        ("tests/unit/test_scaling_policy.py",),
    ),
    Mutation(
        "scaling: the workers' fast alarm at one-minute periods",
        f"{TF}/modules/autoscaling/main.tf",
        """        stat        = "Average"
        period      = var.signal_period_s""",
        """        stat        = "Average"
        period      = 60""",
        ("modules/autoscaling",),
        ("tests/unit/test_scaling_policy.py",),
    ),
    Mutation(
        "scaling: the workers' fast alarm reads another stack's signal",
        f"{TF}/modules/autoscaling/main.tf",
        """        metric_name = metric_query.value
        dimensions  = local.signal.dimensions""",
        """        metric_name = metric_query.value
        dimensions  = { Stack = "default" }""",
        ("modules/autoscaling", "."),
    ),
    Mutation(
        "scaling: no jump to the backend's share past 100 % demand",
        f"{TF}/modules/autoscaling/main.tf",
        "      scaling_adjustment          = 300",
        "      scaling_adjustment          = 50",
        ("modules/autoscaling",),
    ),
    Mutation(
        "scaling: the api tasks never write the signal",
        f"{TF}/modules/compute/main.tf",
        "QF_SCALING_SIGNAL_INTERVAL_S = tostring(var.scaling_signal.interval_s)",
        'QF_SCALING_SIGNAL_INTERVAL_S = "0"',
        (".",),
    ),
    Mutation(
        "scaling: an event's end keeps its minimum",
        f"{TF}/modules/autoscaling/main.tf",
        """          schedule = "at(${e.end})"
          timezone = e.timezone
          min      = local.scalable[service].min""",
        """          schedule = "at(${e.end})"
          timezone = e.timezone
          min      = max(tasks, local.scalable[service].min)""",
        ("modules/autoscaling",),
    ),
    Mutation(
        "scaling: the worker floor may run on Spot",
        f"{TF}/variables.tf",
        "try(var.on_demand_base >= var.worker_min_tasks, false)",
        "true",
        (".",),
    ),
]


def run_suites(tree: Path, mutation: Mutation) -> list[str]:
    """The suites that failed on the mutated ``tree``."""
    failed = []
    env = tfcli.cli_env(tree.parent)
    for suite in mutation.suites:
        result = tfcli.init_and_test(tree / TF / suite, env)
        if result.returncode != 0:
            failed.append(f"terraform test {suite}")
    if mutation.pytest:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *mutation.pytest],
            cwd=tree,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            failed.append("pytest " + " ".join(Path(p).name for p in mutation.pytest))
    return failed


def copy_repo(dest: Path) -> Path:
    ignore = shutil.ignore_patterns(
        ".git", ".venv*", "node_modules", ".terraform*", "__pycache__", ".*_cache"
    )
    shutil.copytree(REPO, dest, ignore=ignore)
    return dest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="substrings of mutation names (default: all)")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.names or any(n in m.name for n in args.names)]
    if not tfcli.AVAILABLE:
        print(tfcli.UNAVAILABLE_REASON, file=sys.stderr)
        return 2
    holes = 0
    for mutation in chosen:
        with tempfile.TemporaryDirectory(prefix="tf-mutation-") as scratch:
            tree = copy_repo(Path(scratch) / "repo")
            mutation.apply(tree)
            failed = run_suites(tree, mutation)
        holes += not failed
        verdict = "caught by " + ", ".join(failed) if failed else "NOT CAUGHT"
        print(f"{mutation.name}: {verdict}", flush=True)
    return 1 if holes else 0


if __name__ == "__main__":
    sys.exit(main())
