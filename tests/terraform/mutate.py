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
        "the workers not given the backend's shared limit",
        f"{TF}/modules/compute/main.tf",
        "      QF_BACKEND_MAX_CONCURRENCY = tostring(var.backend_max_concurrency)\n",
        "",
        ("modules/compute", "."),
    ),
    Mutation(
        "the workers' peak calls counted past the shared limit",
        f"{TF}/modules/autoscaling/main.tf",
        "min(local.worker_peak_tasks * var.worker_concurrency, var.backend_max_concurrency)",
        "local.worker_peak_tasks * var.worker_concurrency",
        ("modules/autoscaling", "."),
    ),
    Mutation(
        "backend bound without the deploy overlap",
        f"{TF}/modules/autoscaling/main.tf",
        "worker_peak_tasks         = floor(var.worker_max_tasks"
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
        '    writer  = { queues = { consume = ["ingest"] }, dlqs = { depth_refuse = ["ingest"] } }',
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
    # --- issue 19: the first apply, the edge, deploys, secrets, direct votes --------------
    Mutation(
        "§1: the Redis URL output names the secret's container, not its value",
        f"{TF}/modules/cache/outputs.tf",
        "  value       = aws_secretsmanager_secret_version.url.arn",
        "  value       = aws_secretsmanager_secret.url.arn",
        ("modules/cache",),
        ("tests/terraform/test_graph.py",),
    ),
    Mutation(
        "§1: services no longer wait for the execution role's policy",
        f"{TF}/modules/compute/main.tf",
        "    aws_iam_role_policy.execution,\n",
        "",
        ("modules/compute",),
        ("tests/terraform/test_graph.py",),
    ),
    Mutation(
        "§1: the tasks' egress leaves out the NAT routes",
        f"{TF}/modules/network/outputs.tf",
        "    aws_route.private_nat[*].id,\n",
        "",
        ("modules/network",),
        ("tests/terraform/test_graph.py",),
    ),
    Mutation(
        "§2: edge-cached paths without the viewer-address function",
        f"{TF}/modules/edge/main.tf",
        "      # every behaviour that reaches the origin says who the viewer is\n"
        "      function_association {\n"
        '        event_type   = "viewer-request"\n'
        "        function_arn = aws_cloudfront_function.viewer_address.arn\n"
        "      }\n",
        "",
        ("modules/edge", "."),
    ),
    Mutation(
        "§2: edge-cached paths keyed on every query string",
        f"{TF}/modules/edge/main.tf",
        'query_string_behavior = length(each.value.query_strings) > 0 ? "whitelist" : "none"',
        'query_string_behavior = "all"',
        ("modules/edge",),
    ),
    Mutation(
        "§2: the edge-cached paths' origin request policy forwards no header",
        f"{TF}/modules/edge/main.tf",
        '    header_behavior = "whitelist"\n'
        "    headers {\n"
        "      items = [local.client_ip_header]\n"
        "    }\n",
        '    header_behavior = "none"\n',
        ("modules/edge",),
    ),
    Mutation(
        "§3: the API's WAF lets in anything that contains the secret",
        f"{TF}/modules/edge/api.tf",
        'positional_constraint = "EXACTLY"',
        'positional_constraint = "CONTAINS"',
        ("modules/edge",),
    ),
    Mutation(
        "§3: a route's throttle on a method path with a leading slash (applies to nothing)",
        f"{TF}/modules/edge/api.tf",
        'method_path = "${trimprefix(each.value.path, "/")}/${upper(each.value.method)}"',
        'method_path = "${each.value.path}/${upper(each.value.method)}"',
        ("modules/edge",),
    ),
    Mutation(
        "§3: the ALB's default action forwards (no origin check at the second hop)",
        f"{TF}/modules/edge/main.tf",
        "  default_action {\n"
        '    type = "fixed-response"\n'
        "\n"
        "    fixed_response {\n"
        '      content_type = "application/json"\n'
        '      status_code  = "403"\n'
        '      message_body = jsonencode({ error = "forbidden", message = "Requests are served '
        'through the public endpoint only" })\n'
        "    }\n"
        "  }\n",
        "  default_action {\n"
        '    type             = "forward"\n'
        "    target_group_arn = aws_lb_target_group.api.arn\n"
        "  }\n",
        ("modules/edge",),
    ),
    Mutation(
        "§4: a rolled-back deployment is not read back",
        f"{TF}/modules/compute/main.tf",
        "  for_each = var.wait_for_steady_state ? local.services : {}",
        "  for_each = {}",
        ("modules/compute",),
    ),
    Mutation(
        "§4: deployment alarms do not roll back",
        f"{TF}/modules/compute/main.tf",
        "    rollback    = true",
        "    rollback    = false",
        ("modules/compute",),
    ),
    Mutation(
        "§4: the worker's deploy drops to half (minimum healthy 50%)",
        f"{TF}/variables.tf",
        'of workers running while a deploy replaces them."\n  default     = 100',
        'of workers running while a deploy replaces them."\n  default     = 50',
        (".",),
    ),
    Mutation(
        "§4: the worker's deploy overlap not derived (100%: with 100% healthy it never starts)",
        f"{TF}/main.tf",
        "    ceil(100 * (var.worker_min_tasks + 1) / var.worker_min_tasks),",
        "    100,",
        (".",),
    ),
    Mutation(
        "§4: a silent collector does not page (missing data not breaching)",
        f"{TF}/modules/observability/main.tf",
        '  statistic           = "SampleCount"\n'
        "  period              = 60\n"
        "  evaluation_periods  = 5\n"
        '  comparison_operator = "LessThanThreshold"\n'
        "  threshold           = 1\n"
        '  treat_missing_data  = "breaching"\n',
        '  statistic           = "SampleCount"\n'
        "  period              = 60\n"
        "  evaluation_periods  = 5\n"
        '  comparison_operator = "LessThanThreshold"\n'
        "  threshold           = 1\n"
        '  treat_missing_data  = "notBreaching"\n',
        ("modules/observability",),
    ),
    Mutation(
        "§4 / issue 16: the clock alarm sees clocks that run ahead only",
        f"{TF}/modules/observability/main.tf",
        'expression  = "MAX([ABS(ahead), ABS(behind)])"',
        'expression  = "ahead"',
        ("modules/observability",),
    ),
    Mutation(
        "§4: the RDS password generated by Terraform again (in the state)",
        f"{TF}/modules/database/main.tf",
        "  manage_master_user_password   = true\n",
        '  password                      = "Generated0ByTerraform0And0Kept0In0State"\n',
        ("modules/database",),
    ),
    Mutation(
        "§5: tasks with public IPs",
        f"{TF}/modules/compute/main.tf",
        "    assign_public_ip = false",
        "    assign_public_ip = true",
        ("modules/compute",),
    ),
    Mutation(
        "§5: Container Insights off (the scaling metric math reads its task count)",
        f"{TF}/modules/compute/main.tf",
        '    name  = "containerInsights"\n    value = "enabled"',
        '    name  = "containerInsights"\n    value = "disabled"',
        ("modules/compute",),
    ),
    Mutation(
        "§5: the ALB drops in-flight replies on deploys (deregistration delay 5 s)",
        f"{TF}/main.tf",
        "  deregistration_delay_s        = ceil(local.reply_window_s) + 15",
        "  deregistration_delay_s        = 5",
        (".",),
    ),
    Mutation(
        "§5: the writer scales on the normal queue",
        f"{TF}/main.tf",
        '  writer_queue_name  = module.queues.queue_names["ingest"]',
        '  writer_queue_name  = module.queues.queue_names["normal"]',
        (".",),
    ),
    Mutation(
        "§5: the edge WAF's rate rule only counts",
        f"{TF}/modules/edge/main.tf",
        "    action {\n      block {}\n    }",
        "    action {\n      count {}\n    }",
        ("modules/edge",),
    ),
    Mutation(
        "§6: the direct route's role may send to every queue",
        f"{TF}/modules/edge/api.tf",
        "        Resource = [var.ingest_direct.queue_arn]",
        '        Resource = ["*"]',
        ("modules/edge",),
    ),
    Mutation(
        "issue 16: Redis may evict exactly-once keys",
        f"{TF}/modules/cache/main.tf",
        'value = "noeviction"',
        'value = "volatile-lru"',
        ("modules/cache",),
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
        "scaling: an event may ask for more tasks than the maximum (apply-time refusal)",
        f"{TF}/modules/autoscaling/main.tf",
        "condition     = each.value.min <= local.scalable[each.value.service].max",
        "condition     = true",
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
