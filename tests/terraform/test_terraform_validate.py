"""When a terraform binary and a local mirror of the AWS provider are at hand (the CI
machines have both), `terraform validate` checks every argument against the provider's
schema and `terraform fmt -check` the formatting. Without them the tests are skipped: the
parse-based tests and checkov still run everywhere."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.terraform.tfmodel import TF_ROOT

MIRROR = Path(os.environ.get("TF_PLUGIN_MIRROR", "/opt/tf-plugins"))
TERRAFORM = shutil.which("terraform")

pytestmark = pytest.mark.skipif(
    TERRAFORM is None or not (MIRROR / "registry.terraform.io" / "hashicorp" / "aws").is_dir(),
    reason="needs terraform and a filesystem mirror of hashicorp/aws (TF_PLUGIN_MIRROR)",
)


def _env(tmp_path: Path) -> dict[str, str]:
    rc = tmp_path / "terraform.rc"
    rc.write_text(
        f'provider_installation {{\n  filesystem_mirror {{\n    path = "{MIRROR}"\n  }}\n}}\n'
    )
    return {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(rc),
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
        "TF_DATA_DIR": str(tmp_path / "data"),
    }


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert TERRAFORM is not None
    return subprocess.run(
        [TERRAFORM, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_terraform_validate(tmp_path: Path) -> None:
    work = tmp_path / "terraform"
    shutil.copytree(TF_ROOT, work, ignore=shutil.ignore_patterns(".terraform*"))
    env = _env(tmp_path)
    init = _run(["init", "-backend=false", "-input=false", "-no-color"], work, env)
    assert init.returncode == 0, init.stderr or init.stdout
    validate = _run(["validate", "-no-color"], work, env)
    assert validate.returncode == 0, validate.stderr or validate.stdout


def test_terraform_fmt(tmp_path: Path) -> None:
    fmt = _run(["fmt", "-check", "-recursive", "-no-color", str(TF_ROOT)], TF_ROOT, _env(tmp_path))
    assert fmt.returncode == 0, f"terraform fmt would change: {fmt.stdout}"
