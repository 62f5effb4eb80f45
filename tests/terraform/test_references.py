"""Every var., local., module., data., ephemeral. and resource reference resolves to a
declaration, and every module call passes only (and all the required) variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.terraform.tfmodel import (
    TF_ROOT,
    child_path,
    is_meta,
    load_module,
    module_dirs,
    unresolved_references,
)

# Meta-arguments of a module block, not input variables.
MODULE_META = frozenset({"source", "version", "providers", "depends_on", "count", "for_each"})


@pytest.mark.parametrize("path", module_dirs(), ids=lambda p: p.name)
def test_every_reference_resolves(path: Path) -> None:
    problems = unresolved_references(load_module(path))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", module_dirs(), ids=lambda p: p.name)
def test_module_calls_match_the_modules_variables(path: Path) -> None:
    parent = load_module(path)
    problems = []
    for name, call in parent.module_calls.items():
        child = load_module(child_path(parent, call))
        given = {k for k in call if not is_meta(k)} - MODULE_META
        unknown = given - set(child.variables)
        required = {v for v, body in child.variables.items() if "default" not in body}
        if unknown:
            problems.append(f"module.{name} passes undeclared variables {sorted(unknown)}")
        if required - given:
            problems.append(f"module.{name} lacks required variables {sorted(required - given)}")
    assert not problems, "\n".join(problems)


def test_the_reference_check_catches_a_dangling_reference(tmp_path: Path) -> None:
    """The checker itself: an undeclared variable, local, resource and output are reported."""
    (tmp_path / "main.tf").write_text(
        'variable "a" {\n  type = string\n}\n'
        'resource "aws_sqs_queue" "q" {\n  name = "${var.a}-${var.b}"\n'
        "  tags = local.missing\n  policy = aws_iam_policy.nope.arn\n}\n"
    )
    problems = unresolved_references(load_module(tmp_path))
    assert any("var.b" in p for p in problems)
    assert any("local.missing" in p for p in problems)
    assert any("aws_iam_policy.nope" in p for p in problems)
    assert not any("var.a " in p for p in problems)
    assert TF_ROOT.is_dir()
