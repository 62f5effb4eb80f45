"""Runs promtool: the one on PATH, else the prom/prometheus image if a Docker engine has it.

Neither available is a failure, not a skip: these checks are part of ``make test``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

IMAGE = "prom/prometheus:latest"
INSTALL_HINT = (
    "promtool not found. It ships in Debian's prometheus package; to install only promtool "
    "(no server, no service started, no other packages): `apt-get update && d=$(mktemp -d) && "
    "(cd $d && apt-get download prometheus && dpkg-deb --fsys-tarfile prometheus_*.deb | "
    "tar -xO ./usr/bin/promtool > /usr/local/bin/promtool) && chmod +x /usr/local/bin/promtool "
    "&& rm -rf $d`. (`apt-get install --no-install-recommends prometheus` works too, but its "
    "post-install starts the server unless /usr/sbin/policy-rc.d forbids it.) Or run a Docker "
    f"engine that has the image {IMAGE}."
)


def _docker_has_image() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        found = subprocess.run(
            [docker, "image", "inspect", IMAGE], capture_output=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    return found.returncode == 0


def run_promtool(args: list[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    """``promtool ARGS`` run in ``workdir``; paths in ``args`` are relative to it (in Docker,
    ``workdir`` is mounted read-only at /etc/prometheus, the compose mount point)."""
    local = shutil.which("promtool")
    if local is not None:
        command = [local, *args]
    elif _docker_has_image():
        command = [
            "docker", "run", "--rm", "--network", "none", "--entrypoint", "promtool",
            "--user", f"{os.getuid()}:{os.getgid()}",  # reads what the caller can read
            "-v", f"{workdir.resolve()}:/etc/prometheus:ro", "-w", "/etc/prometheus",
            IMAGE, *args,
        ]  # fmt: skip
    else:
        pytest.fail(INSTALL_HINT)
    return subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=120, check=False
    )
