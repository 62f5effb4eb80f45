"""``queuefront <role>``: one entry point for every process of the one image.

The container's command picks the role (api, worker, writer, migrate, init, backend,
admin); ``healthcheck`` is the image's HEALTHCHECK, which does not know the role, so
it asks whichever of the process ports answers.
"""

from __future__ import annotations

import os
import runpy
import sys
import urllib.request

ROLES = {
    "api": "service",
    "worker": "workers.priority",
    "writer": "workers.ingest",
    "migrate": "queuefront.migrate",
    "queues": "queuefront.queues",
    "admin": "queuefront.admin",
    "backend": "examples.legacy_backend",
}


def healthcheck() -> int:
    ports = [
        os.environ.get("QF_HTTP_PORT", "8080"),
        os.environ.get("QF_METRICS_PORT", "9100"),
        os.environ.get("QF_DEMO_PORT", "9000"),
    ]
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return 0
        except OSError:
            continue
    return 1


def init() -> int:
    """The compose init service: queues and migrations, then exit."""
    for module in ("queuefront.queues", "queuefront.migrate"):
        sys.argv = [module]
        runpy.run_module(module, run_name="__main__")
    return 0


def main() -> None:
    role = sys.argv[1] if len(sys.argv) > 1 else "api"
    if role == "healthcheck":
        sys.exit(healthcheck())
    if role == "init":
        sys.exit(init())
    if role not in ROLES:
        names = ", ".join([*ROLES, "init", "healthcheck"])
        sys.exit(f"unknown role {role!r}; one of: {names}")
    sys.argv = [ROLES[role], *sys.argv[2:]]
    runpy.run_module(ROLES[role], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
