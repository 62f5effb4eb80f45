"""The compose stack, brought up once for the container tests (without Grafana, whose
image is not available offline; its dashboards are checked against Prometheus instead).

The stack runs under its own compose project name and on free host ports, so it never
collides with a stack a developer has running. It lives as long as this package's tests
(package scope): left up for the rest of the session, its ten idle containers (health
checks every 5 s, scrapes, polls) took CPU from every test after them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from testcontainers.compose import DockerCompose

from devstack import ROOT, free_port
from devstack.compose import COMPOSE_SERVICES as SERVICES


def docker_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run([docker, "info"], capture_output=True, timeout=20, check=False)
    return probe.returncode == 0


@dataclass
class ComposeStack:
    compose: DockerCompose
    project: str
    edge_url: str
    prometheus_url: str
    env: dict[str, str]
    """The environment of every compose command of this stack (never the session's own:
    a setting meant for the containers must not leak into the processes that later
    tests start, e.g. QF_ADMISSION_PREDICTIVE=false into tests/integration)."""

    def run(self, *args: str, timeout_s: float = 120) -> str:
        """``docker compose ARGS`` on this stack; returns stdout, raises on failure."""
        result = subprocess.run(
            ["docker", "compose", "-f", str(ROOT / "compose.yaml"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        assert result.returncode == 0, f"compose {args}: {result.stderr[-2000:]}"
        return result.stdout

    def psql(self, sql: str) -> str:
        return self.run(
            "exec",
            "-T",
            "postgres",
            "psql",
            "-U",
            "queuefront",
            "-d",
            "queuefront",
            "-At",
            "-c",
            sql,
        ).strip()

    def backend_calls(self) -> dict[str, int]:
        import json

        out = self.run(
            "exec",
            "-T",
            "api",
            "python",
            "-c",
            "import urllib.request;"
            "print(urllib.request.urlopen('http://backend:9000/__stats').read().decode())",
        )
        calls: dict[str, int] = json.loads(out)["calls"]
        return calls


@contextlib.contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` is ``env`` inside, and exactly what it was before outside."""
    saved = os.environ.copy()
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="package")
def compose_stack() -> Iterator[ComposeStack]:
    if not docker_answers():
        pytest.skip("no Docker engine answers (../shared/containers/build-offline-images.sh)")
    project = f"qftest{uuid.uuid4().hex[:6]}"
    edge_port, prometheus_port = free_port(), free_port()
    env = {
        **os.environ,
        **{
            "COMPOSE_PROJECT_NAME": project,
            "QF_EDGE_PORT": str(edge_port),
            "QF_PROMETHEUS_PORT": str(prometheus_port),
            "TESTCONTAINERS_RYUK_DISABLED": "true",
            # these tests stop the worker on purpose to build a queue (priority, the 504
            # window, restarts); admission's own job would be to refuse that queue — it
            # is tested against real processes in tests/integration/test_overload.py
            "QF_ADMISSION_PREDICTIVE": "false",
            # every request reaches the api from the one address of the test's machine
            "QF_ANON_RATE_LIMIT_RPS": "0",
            # the scaled-out shape: the edge spreads over several replicas, Prometheus
            # finds each (one replica is the default, for a machine of two cores)
            "QF_API_REPLICAS": "2",
        },
    }
    compose = DockerCompose(
        ROOT,
        compose_file_name="compose.yaml",
        build=True,
        wait=True,
        services=SERVICES,
        quiet_build=True,
    )
    try:
        with environ(env):  # testcontainers reads os.environ
            compose.start()
    except Exception as exc:
        states = subprocess.run(
            ["docker", "compose", "-f", str(ROOT / "compose.yaml"), "ps", "-a"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        logs = subprocess.run(
            ["docker", "compose", "-f", str(ROOT / "compose.yaml"), "logs", "--tail", "40"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        with environ(env):
            compose.stop()
        raise AssertionError(
            f"compose up failed: {exc!r}\n{states.stdout}\n{logs.stdout[-6000:]}"
        ) from None
    try:
        yield ComposeStack(
            compose,
            project,
            f"http://127.0.0.1:{edge_port}",
            f"http://127.0.0.1:{prometheus_port}",
            env,
        )
    finally:
        with environ(env):
            compose.stop(down=True)
        subprocess.run(
            [
                "docker",
                "compose",
                "-f",
                str(ROOT / "compose.yaml"),
                "down",
                "-v",
                "--remove-orphans",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=False,
        )
