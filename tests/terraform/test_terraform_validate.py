"""`terraform validate` checks every argument against the AWS provider's schema and
`terraform fmt -check` the formatting (the .tftest.hcl suites included), offline with the
provider mirror (tests/terraform/tfcli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.terraform import tfcli
from tests.terraform.tfmodel import TF_ROOT

pytestmark = pytest.mark.skipif(not tfcli.AVAILABLE, reason=tfcli.UNAVAILABLE_REASON)


def test_terraform_validate(tmp_path: Path) -> None:
    work = tfcli.copy_tree(tmp_path / "terraform")
    env = tfcli.cli_env(tmp_path)
    init = tfcli.run(["init", "-backend=false", "-input=false", "-no-color"], work, env)
    assert init.returncode == 0, init.stderr or init.stdout
    validate = tfcli.run(["validate", "-no-color"], work, env)
    assert validate.returncode == 0, validate.stderr or validate.stdout


def test_terraform_fmt(tmp_path: Path) -> None:
    fmt = tfcli.run(
        ["fmt", "-check", "-recursive", "-no-color", str(TF_ROOT)], TF_ROOT, tfcli.cli_env(tmp_path)
    )
    assert fmt.returncode == 0, f"terraform fmt would change: {fmt.stdout}"
