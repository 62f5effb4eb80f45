"""Shape of deploy/terraform: every file parses, every module has its files, every variable is
typed and described, the AWS provider is pinned, and the root composes every module."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.terraform.tfmodel import (
    MODULES_DIR,
    TF_ROOT,
    child_path,
    literal,
    load_module,
    module_dirs,
    parse_file,
    tf_files,
    unquote,
)

MODULE_FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md")


def _rel(path: Path) -> str:
    return str(path.relative_to(TF_ROOT))


def test_there_is_terraform_to_check() -> None:
    assert len(tf_files()) >= 30
    assert len(module_dirs()) >= 8


@pytest.mark.parametrize("path", tf_files(), ids=_rel)
def test_every_file_parses(path: Path) -> None:
    parsed = parse_file(path)
    assert parsed, f"{path} parsed to nothing"


@pytest.mark.parametrize("path", module_dirs(), ids=lambda p: p.name)
def test_module_has_its_files(path: Path) -> None:
    missing = [f for f in MODULE_FILES if not (path / f).is_file()]
    assert not missing, f"{path.name} lacks {missing}"


@pytest.mark.parametrize("path", module_dirs(), ids=lambda p: p.name)
def test_aws_provider_is_pinned(path: Path) -> None:
    versions = parse_file(path / "versions.tf")
    (terraform,) = versions["terraform"]
    assert "required_version" in terraform
    (providers,) = terraform["required_providers"]
    aws = providers["aws"]
    assert unquote(aws["source"]) == "hashicorp/aws"
    assert re.fullmatch(r"~> 5\.\d+", unquote(aws["version"])), aws["version"]


@pytest.mark.parametrize("path", module_dirs(), ids=lambda p: p.name)
def test_every_variable_is_typed_and_described(path: Path) -> None:
    mod = load_module(path)
    assert mod.variables, f"{path.name} declares no variables"
    problems = []
    for name, body in mod.variables.items():
        if "type" not in body:
            problems.append(f"{name}: no type")
        description = literal(body, "description") if "description" in body else ""
        if len(description.strip()) < 10:
            problems.append(f"{name}: no description")
        for check in body.get("validation", []):
            if "condition" not in check or "error_message" not in check:
                problems.append(f"{name}: incomplete validation")
    assert not problems, f"{path.name}: {problems}"


@pytest.mark.parametrize("path", module_dirs(), ids=lambda p: p.name)
def test_every_output_is_described(path: Path) -> None:
    mod = load_module(path)
    assert mod.outputs, f"{path.name} has no outputs"
    undescribed = [n for n, body in mod.outputs.items() if "description" not in body]
    assert not undescribed, f"{path.name}: {undescribed}"


@pytest.mark.parametrize("path", module_dirs(), ids=lambda p: p.name)
def test_module_readme_lists_inputs_and_outputs(path: Path) -> None:
    mod = load_module(path)
    readme = (path / "README.md").read_text()
    missing_inputs = [v for v in mod.variables if f"`{v}`" not in readme]
    missing_outputs = [o for o in mod.outputs if f"`{o}`" not in readme]
    assert not missing_inputs, f"{path.name}/README.md does not document inputs {missing_inputs}"
    assert not missing_outputs, f"{path.name}/README.md does not document outputs {missing_outputs}"


def test_root_composes_every_module() -> None:
    root = load_module(TF_ROOT)
    used = {child_path(root, call) for call in root.module_calls.values()}
    every = {p.resolve() for p in MODULES_DIR.iterdir() if p.is_dir()}
    assert used == every, f"not composed: {sorted(p.name for p in every - used)}"


def test_waf_for_cloudfront_is_in_us_east_1() -> None:
    root = load_module(TF_ROOT)
    providers = root.files[TF_ROOT / "providers.tf"]["provider"]
    aliases = {
        unquote(body["alias"]): unquote(body["region"])
        for entry in providers
        for label, body in entry.items()
        if unquote(label) == "aws" and "alias" in body
    }
    assert aliases.get("us_east_1") == "us-east-1"
    edge = load_module(MODULES_DIR / "edge")
    acl = edge.resource("aws_wafv2_web_acl", "this")
    assert literal(acl, "scope") == "CLOUDFRONT"
    assert acl["provider"] == "${aws.us_east_1}"


def test_example_tfvars_sets_only_declared_variables() -> None:
    root = load_module(TF_ROOT)
    tfvars = parse_file(TF_ROOT / "examples" / "production.tfvars")
    unknown = {k for k in tfvars if not k.startswith("__")} - set(root.variables)
    assert not unknown, f"production.tfvars sets undeclared variables {sorted(unknown)}"
    required = {n for n, body in root.variables.items() if "default" not in body}
    assert required <= set(tfvars), f"production.tfvars lacks {sorted(required - set(tfvars))}"
