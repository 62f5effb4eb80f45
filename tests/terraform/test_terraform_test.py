"""`terraform test` for the root module (with examples/production.tfvars) and for every
module: offline, with mocked AWS providers, asserting on planned values (container
definitions, IAM documents, cache keys, scaling targets, alarm thresholds). The suites are
the *.tftest.hcl files under deploy/terraform/**/tests."""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.terraform import tfcli
from tests.terraform.tfmodel import TF_ROOT

pytestmark = pytest.mark.skipif(not tfcli.AVAILABLE, reason=tfcli.UNAVAILABLE_REASON)

SUMMARY = re.compile(r"Success! (\d+) passed, 0 failed")
PARALLEL_SUITES = 2
"""Suites run at once: each `terraform test` is mostly one busy process, and the suites
together took about 4.5 minutes of the suite's wall time one after another."""
SLOWEST_FIRST = ("edge", "terraform", "compute")
"""Started first so the two lanes finish together (edge's runs are mock applies)."""

Runs = dict[Path, Future[subprocess.CompletedProcess[str]]]


@pytest.fixture(scope="module")
def suite_runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Every suite started on a scratch copy, PARALLEL_SUITES at a time; each test below
    waits for its own."""
    base = tmp_path_factory.mktemp("terraform-test")
    tree, env = tfcli.copy_tree(base / "terraform"), tfcli.cli_env(base)
    modules = sorted(
        tfcli.suite_dirs(),
        key=lambda m: SLOWEST_FIRST.index(m.name) if m.name in SLOWEST_FIRST else 99,
    )
    pool = ThreadPoolExecutor(PARALLEL_SUITES, thread_name_prefix="terraform-test")
    runs = {
        m: pool.submit(tfcli.init_and_test, tree / m.relative_to(TF_ROOT), env) for m in modules
    }
    pool.shutdown(wait=False)
    return runs


def test_every_module_has_a_suite() -> None:
    suites = {p.name if p != TF_ROOT else "root" for p in tfcli.suite_dirs()}
    modules = {p.name for p in (TF_ROOT / "modules").iterdir() if p.is_dir()}
    assert suites == modules | {"root"}, f"modules without tests/*.tftest.hcl: {modules - suites}"


@pytest.mark.parametrize(
    "module", tfcli.suite_dirs(), ids=lambda p: "root" if p == TF_ROOT else p.name
)
def test_terraform_test_passes(module: Path, suite_runs: Runs) -> None:
    result = suite_runs[module].result(timeout=2 * tfcli.COMMAND_TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    match = SUMMARY.search(output)
    assert match and int(match.group(1)) > 0, output[-3000:]
