"""The task definitions' settings against the code: the QF_* names they set are fields of
queuefront.settings.Settings, each process gets what it cannot run without, and credentials
come from Secrets Manager. (What the tasks run and what their roles may do is checked on
the planned values by `terraform test`, modules/compute/tests, and against the code by
test_entrypoints.py and test_queue_access.py.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from queuefront.settings import Settings
from tests.terraform.tfmodel import MODULES_DIR, TF_ROOT, keys, load_module

PROCESSES = ("api", "worker", "writer", "migrate", "admin")
ENV_NAME = re.compile(r"\b(QF_[A-Z0-9_]+)\s*=")
LOCAL_REF = re.compile(r"local\.([a-z_]+)")

# What each process cannot run without in AWS: the settings whose defaults point at a local
# machine (127.0.0.1, local queue names) or that tell it where its queues and region are.
REQUIRED = {
    "api": {
        "QF_REDIS_URL",
        "QF_AWS_REGION",
        "QF_QUEUE_HIGH",
        "QF_QUEUE_NORMAL",
        "QF_QUEUE_INGEST",
        "QF_HTTP_PORT",
        "QF_SQS_ENDPOINT_URL",
    },
    "worker": {
        "QF_REDIS_URL",
        "QF_AWS_REGION",
        "QF_QUEUE_HIGH",
        "QF_QUEUE_NORMAL",
        "QF_BACKEND_URL",
        "QF_METRICS_PORT",
        "QF_SHUTDOWN_TIMEOUT_S",
        "QF_SQS_ENDPOINT_URL",
    },
    "writer": {
        "QF_REDIS_URL",
        "QF_DATABASE_URL",
        "PGPASSWORD",
        "QF_AWS_REGION",
        "QF_QUEUE_INGEST",
        "QF_METRICS_PORT",
        "QF_SQS_ENDPOINT_URL",
    },
    "migrate": {"QF_DATABASE_URL", "PGPASSWORD"},
    "admin": {
        "QF_REDIS_URL",
        "QF_DATABASE_URL",
        "PGPASSWORD",
        "QF_AWS_REGION",
        "QF_QUEUE_HIGH",
        "QF_QUEUE_NORMAL",
        "QF_QUEUE_INGEST",
        "QF_SQS_ENDPOINT_URL",
    },
}

# Credentials: never plain environment, always a Secrets Manager reference.
MUST_BE_SECRETS = {
    "QF_REDIS_URL",
    "QF_DATABASE_URL",
    "QF_AUTH_API_KEYS",
    "QF_AUTH_JWT_SECRET",
    "PGPASSWORD",
}


# Read by the Postgres driver rather than by Settings: asyncpg takes PGPASSWORD when the URL
# has no password (the RDS-managed password; deploy/terraform/modules/database).
DRIVER_ENV = {"PGPASSWORD"}


def test_the_driver_reads_what_the_tasks_set() -> None:
    import inspect

    from asyncpg import connect_utils

    source = inspect.getsource(connect_utils)
    for name in DRIVER_ENV:
        assert f"os.getenv('{name}')" in source, f"asyncpg no longer reads {name}"


def settings_env_names() -> set[str]:
    """The environment variable of every field of Settings (prefix + upper-cased name)."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def compute_locals() -> dict[str, Any]:
    return load_module(MODULES_DIR / "compute").locals


def _names_of(entry: Any, seen: frozenset[str] = frozenset()) -> set[str]:
    """QF_* names of an environment entry: an object, or merge(local.x, {...}) of them."""
    if isinstance(entry, dict):
        return keys(entry)
    text = str(entry)
    found = set(ENV_NAME.findall(text))
    for name in LOCAL_REF.findall(text):
        if name not in seen:
            found |= _names_of(compute_locals()[name], seen | {name})
    return found


def names(process: str, kind: str) -> set[str]:
    table = compute_locals()[kind]
    return _names_of(table[process])


def test_settings_names_are_what_the_check_expects() -> None:
    known = settings_env_names() | DRIVER_ENV
    assert {"QF_REDIS_URL", "QF_DATABASE_URL", "QF_QUEUE_HIGH", "QF_HTTP_PORT"} <= known
    every_required = set().union(*REQUIRED.values()) | MUST_BE_SECRETS
    assert every_required <= known, (
        f"REQUIRED names settings that do not exist: {every_required - known}"
    )


def test_every_process_has_environment_and_secrets() -> None:
    loc = compute_locals()
    assert keys(loc["processes"]) == set(PROCESSES)
    assert keys(loc["environment"]) == set(PROCESSES)
    assert keys(loc["secrets"]) == set(PROCESSES)


@pytest.mark.parametrize("process", PROCESSES)
def test_task_definition_names_only_settings_the_code_has(process: str) -> None:
    known = settings_env_names() | DRIVER_ENV
    env, secrets = names(process, "environment"), names(process, "secrets")
    unknown = (env | secrets) - known
    assert not unknown, (
        f"{process}: {sorted(unknown)} are not fields of queuefront.settings.Settings"
    )
    assert not env & secrets, f"{process}: {sorted(env & secrets)} set both ways"


@pytest.mark.parametrize("process", PROCESSES)
def test_process_gets_what_it_needs(process: str) -> None:
    given = names(process, "environment") | names(process, "secrets")
    missing = REQUIRED[process] - given
    assert not missing, f"{process} lacks {sorted(missing)}"


@pytest.mark.parametrize("process", PROCESSES)
def test_credentials_come_from_secrets_manager(process: str) -> None:
    env, secrets = names(process, "environment"), names(process, "secrets")
    assert not env & MUST_BE_SECRETS, (
        f"{process}: {sorted(env & MUST_BE_SECRETS)} in plain environment"
    )
    table = compute_locals()["secrets"][process]
    for name in secrets:
        ref = str(table[name])
        local = re.fullmatch(r"\$\{local\.([a-z_]+)\}", ref)
        if local:  # a JSON key of a secret: "${var.<secret arn>}:<key>::"
            ref = str(compute_locals()[local.group(1)]).strip('"')
        assert ref.startswith("${var."), f"{process}.{name} must be a secret ARN variable"


def test_queue_names_come_from_the_queues_module() -> None:
    env = compute_locals()["environment"]
    for process, queues in {
        "api": ("high", "normal", "ingest"),
        "worker": ("high", "normal"),
        "writer": ("ingest",),
        "admin": ("high", "normal", "ingest"),
    }.items():
        for q in queues:
            assert f'QF_QUEUE_{q.upper()} = var.queue_names["{q}"]' in str(env[process])
    root = load_module(TF_ROOT).module_calls["compute"]
    assert root["queue_names"] == "${module.queues.queue_names}"
    # one suffix for the DLQs Terraform creates and the name the processes derive
    assert root["dlq_suffix"] == "${var.dlq_suffix}"
    assert load_module(TF_ROOT).module_calls["queues"]["dlq_suffix"] == "${var.dlq_suffix}"


@pytest.mark.parametrize("path", [TF_ROOT, MODULES_DIR / "compute"], ids=lambda p: p.name)
def test_settings_variable_exposes_only_real_settings(path: Path) -> None:
    """The `settings` object variable: each attribute becomes QF_<NAME>, so each must exist."""
    type_expr = str(load_module(path).variables["settings"]["type"])
    attributes = set(re.findall(r"([a-z_][a-z0-9_]*)\s*=", type_expr))
    assert attributes, type_expr
    unknown = {f"QF_{a.upper()}" for a in attributes} - settings_env_names()
    assert not unknown, f"{path.name}: settings.{sorted(unknown)} are not fields of Settings"


def test_stop_timeout_leaves_time_to_drain() -> None:
    for path in (TF_ROOT, MODULES_DIR / "compute"):
        stop = load_module(path).variables["stop_timeout_s"]
        default = int(stop["default"])
        assert Settings().shutdown_timeout_s + 10 <= default <= 120, default
