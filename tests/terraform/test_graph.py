"""The order of a first apply, read from `terraform graph` (offline: the provider mirror of
tests/terraform/tfcli.py, no credentials, nothing planned).

An ECS service created before what its tasks need launches tasks that cannot start (no
`AWSCURRENT` value of a secret, no route to ECR, a target group no listener rule uses);
three failures trip the deployment circuit breaker, `wait_for_steady_state` times out and
the first apply fails. So every service must depend, transitively, on each of those
resources. The required set is derived from the graph by resource type and module, not
listed by name, so a new secret, listener rule, log group, route or security group rule is
covered as soon as it exists.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

from tests.terraform import tfcli

pytestmark = pytest.mark.skipif(not tfcli.AVAILABLE, reason=tfcli.UNAVAILABLE_REASON)

EDGE = re.compile(r'"([^"]+)"\s*->\s*"([^"]+)"')
NODE = re.compile(r'^\s*"([^"]+)"\s*\[label=', re.M)
SERVICES = "module.compute.aws_ecs_service.this"

Graph = dict[str, set[str]]


def parse(dot: str) -> tuple[set[str], Graph]:
    """Nodes and edges (a -> b: a depends on b) of `terraform graph`'s DOT output."""
    edges: Graph = {}
    for a, b in EDGE.findall(dot):
        edges.setdefault(a, set()).add(b)
    nodes = set(NODE.findall(dot)) | set(edges) | {b for bs in edges.values() for b in bs}
    return nodes, edges


def ancestors(edges: Graph, node: str) -> set[str]:
    """Everything ``node`` depends on, transitively."""
    seen: set[str] = set()
    todo = [node]
    while todo:
        for dep in edges.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def of_type(modules: str | tuple[str, ...] | None, *types: str) -> Callable[[str], bool]:
    """Resources of ``types`` in ``modules`` (one name, several, or None: any)."""
    wanted = (modules,) if isinstance(modules, str) else modules

    def match(node: str) -> bool:
        parts = node.split(".")
        if parts[0] != "module" or (wanted is not None and parts[1] not in wanted):
            return False
        return len(parts) == 4 and parts[2] in types

    return match


# What a service's tasks need before the first one can start, by (module, resource type).
# None: in any module.
NEEDED: dict[str, Callable[[str], bool]] = {
    # the values ECS injects (a secret's container exists minutes before its value)
    "secret values": of_type(None, "aws_secretsmanager_secret_version"),
    # the data stores the secrets point at
    "data stores": of_type(None, "aws_elasticache_replication_group", "aws_db_instance"),
    # ECS registers the api with a target group only once a listener rule forwards to it
    # (the ALB's; the NLB in front of it carries viewers' requests, which no task needs)
    "listener and rules": lambda n: (
        of_type("edge", "aws_lb_listener", "aws_lb_listener_rule")(n) and not n.endswith(".nlb")
    ),
    # awslogs and the collector write to these at start
    "log groups": of_type("compute", "aws_cloudwatch_log_group"),
    # the execution role pulls and reads secrets, the task roles open the queues
    "role policies": of_type("compute", "aws_iam_role_policy"),
    # the path to ECR, Secrets Manager, SQS and logs (the NAT gateways' own way out, the
    # public route, included)
    "routes and endpoints": of_type(
        "network", "aws_route", "aws_route_table_association", "aws_nat_gateway", "aws_vpc_endpoint"
    ),
    # the tasks' own network paths (egress to AWS APIs, Redis, Postgres, the backend; the
    # ALB's health checks). The edge's rules (API Gateway's VPC link to the ALB) carry
    # viewers' requests, which no task needs to start.
    "security group rules": of_type(
        ("network", "compute", "cache", "database"),
        "aws_vpc_security_group_ingress_rule",
        "aws_vpc_security_group_egress_rule",
    ),
    "queues": of_type("queues", "aws_cloudcontrolapi_resource"),
    "capacity providers": of_type("compute", "aws_ecs_cluster_capacity_providers"),
}


@cache
def stack_graph() -> tuple[set[str], Graph]:
    with tempfile.TemporaryDirectory(prefix="tf-graph-") as scratch:
        base = Path(scratch)
        work = tfcli.copy_tree(base / "terraform")
        env = tfcli.cli_env(base)
        init = tfcli.run(["init", "-backend=false", "-input=false", "-no-color"], work, env)
        assert init.returncode == 0, init.stderr or init.stdout
        graph = tfcli.run(["graph"], work, env)
        assert graph.returncode == 0, graph.stderr or graph.stdout
    return parse(graph.stdout)


def missing_prerequisites(nodes: set[str], edges: Graph) -> dict[str, list[str]]:
    """Per category, the needed resources the services do not wait for."""
    before = ancestors(edges, SERVICES)
    missing: dict[str, list[str]] = {}
    for category, match in NEEDED.items():
        needed = {n for n in nodes if match(n)}
        assert needed, f"no {category} in the graph: has the stack changed shape?"
        if needed - before:
            missing[category] = sorted(needed - before)
    return missing


def test_the_graph_has_the_services() -> None:
    nodes, edges = stack_graph()
    assert SERVICES in nodes
    assert "module.compute.aws_ecs_task_definition.this" in ancestors(edges, SERVICES)


def test_services_start_after_everything_their_tasks_need() -> None:
    nodes, edges = stack_graph()
    missing = missing_prerequisites(nodes, edges)
    assert not missing, (
        "the ECS services may be created before what their tasks need to start: "
        + "; ".join(f"{k}: {', '.join(v)}" for k, v in missing.items())
    )


def test_autoscaling_waits_for_the_services() -> None:
    """Scaling targets name the services: they exist only after them."""
    nodes, edges = stack_graph()
    targets = {n for n in nodes if of_type("autoscaling", "aws_appautoscaling_target")(n)}
    assert targets
    assert all(SERVICES in ancestors(edges, t) for t in targets)


def test_the_check_sees_a_missing_dependency() -> None:
    """The check itself: a service that waits only for its task definition is reported."""
    dot = (
        '"module.compute.aws_ecs_service.this" -> "module.compute.aws_ecs_task_definition.this";\n'
        '"module.cache.aws_secretsmanager_secret_version.url" [label="x"];\n'
    )
    nodes, edges = parse(dot)
    assert "module.cache.aws_secretsmanager_secret_version.url" in nodes
    before = ancestors(edges, SERVICES)
    assert "module.cache.aws_secretsmanager_secret_version.url" not in before
    assert NEEDED["secret values"]("module.cache.aws_secretsmanager_secret_version.url")
    assert not NEEDED["secret values"]("module.cache.aws_secretsmanager_secret.url")
