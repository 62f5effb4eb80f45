"""`terraform test` for the root module (with examples/production.tfvars) and for every
module: offline, with mocked AWS providers, asserting on planned values (container
definitions, IAM documents, cache keys, scaling targets, alarm thresholds). The suites are
the *.tftest.hcl files under deploy/terraform/**/tests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.terraform import tfcli
from tests.terraform.tfmodel import TF_ROOT

pytestmark = pytest.mark.skipif(not tfcli.AVAILABLE, reason=tfcli.UNAVAILABLE_REASON)

SUMMARY = re.compile(r"Success! (\d+) passed, 0 failed")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("terraform-test")
    return tfcli.copy_tree(base / "terraform"), tfcli.cli_env(base)


def test_every_module_has_a_suite() -> None:
    suites = {p.name if p != TF_ROOT else "root" for p in tfcli.suite_dirs()}
    modules = {p.name for p in (TF_ROOT / "modules").iterdir() if p.is_dir()}
    assert suites == modules | {"root"}, f"modules without tests/*.tftest.hcl: {modules - suites}"


@pytest.mark.parametrize(
    "module", tfcli.suite_dirs(), ids=lambda p: "root" if p == TF_ROOT else p.name
)
def test_terraform_test_passes(module: Path, scratch: tuple[Path, dict[str, str]]) -> None:
    tree, env = scratch
    work = tree / module.relative_to(TF_ROOT)
    result = tfcli.init_and_test(work, env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    match = SUMMARY.search(output)
    assert match and int(match.group(1)) > 0, output[-3000:]
