"""The compose stack as the tests and the benchmarks bring it up."""

from __future__ import annotations

COMPOSE_SERVICES = [
    "redis",
    "postgres",
    "sqs",
    "init",
    "backend",
    "api",
    "worker",
    "writer",
    "edge",
    "prometheus",
]
"""Every service of compose.yaml but Grafana, whose image is not available offline (its
dashboards are checked against Prometheus instead)."""
