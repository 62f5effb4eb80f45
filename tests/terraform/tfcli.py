"""Running the terraform binary offline: a CLI configuration that installs the AWS provider
from the filesystem mirror these machines have, and a scratch copy of deploy/terraform so
that `terraform init` leaves nothing (.terraform, lock files) in the work tree.

The mirror is ``$TF_PLUGIN_MIRROR`` (default ``/opt/tf-plugins``), laid out as
``registry.terraform.io/hashicorp/aws/<version>/<os_arch>/``. Nothing here reads the
user's own ~/.terraformrc.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.terraform.tfmodel import TF_ROOT

MIRROR = Path(os.environ.get("TF_PLUGIN_MIRROR", "/opt/tf-plugins"))
TERRAFORM = shutil.which("terraform")
AVAILABLE = (
    TERRAFORM is not None and (MIRROR / "registry.terraform.io" / "hashicorp" / "aws").is_dir()
)
UNAVAILABLE_REASON = "needs terraform and a filesystem mirror of hashicorp/aws (TF_PLUGIN_MIRROR)"

COMMAND_TIMEOUT_S = 600


def cli_env(work: Path) -> dict[str, str]:
    """Environment for terraform: offline provider installation, no update checks."""
    rc = work / "terraform.rc"
    rc.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{MIRROR}"\n    include = ["hashicorp/*"]\n  }}\n'
        '  direct {\n    exclude = ["hashicorp/*"]\n  }\n'
        "}\n"
    )
    return {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(rc),
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
    }


def copy_tree(dest: Path, source: Path = TF_ROOT) -> Path:
    """deploy/terraform (or a mutated copy) without any .terraform state."""
    ignore = shutil.ignore_patterns(".terraform*", "terraform.tfstate*")
    shutil.copytree(source, dest, ignore=ignore)
    return dest


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert TERRAFORM is not None
    return subprocess.run(
        [TERRAFORM, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def suite_dirs(root: Path = TF_ROOT) -> list[Path]:
    """Every module directory with a tests/*.tftest.hcl suite (the root first)."""
    return [
        d
        for d in [root, *sorted(p for p in (root / "modules").iterdir() if p.is_dir())]
        if any((d / "tests").glob("*.tftest.hcl"))
    ]


def test_args(module: Path, root: Path = TF_ROOT) -> list[str]:
    """`terraform test` arguments: the root runs with examples/production.tfvars."""
    args = ["test", "-no-color"]
    if module.resolve() == root.resolve():
        args.append("-var-file=examples/production.tfvars")
    return args


def init_and_test(module: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`terraform init` then `terraform test` in ``module``; the init's failure is returned
    as it is."""
    init = run(["init", "-backend=false", "-input=false", "-no-color"], module, env)
    if init.returncode != 0:
        return init
    root = module if (module / "modules").is_dir() else module.parents[1]
    return run(test_args(module, root), module, env)
