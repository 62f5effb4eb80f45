"""A small model of the Terraform under ``deploy/terraform``, parsed with python-hcl2.

No terraform binary is needed: every ``.tf`` file is parsed into Python data and the
declarations (variables, locals, outputs, module calls, resources, data sources, ephemeral
resources) of each module directory are collected, together with every expression string,
so that the tests can check what refers to what.

python-hcl2 (8.x) gives block labels and string literals with their quotes (``'"name"'``),
expressions as ``"${...}"`` strings, nested blocks as lists of dicts marked
``__is_block__``, and comments under ``__comments__``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import hcl2

REPO = Path(__file__).resolve().parents[2]
TF_ROOT = REPO / "deploy" / "terraform"
MODULES_DIR = TF_ROOT / "modules"


_IDENT = r"[A-Za-z_][A-Za-z0-9_-]*"
VAR_REF = re.compile(rf"(?<![\w.])var\.({_IDENT})")
LOCAL_REF = re.compile(rf"(?<![\w.])local\.({_IDENT})")
MODULE_REF = re.compile(rf"(?<![\w.])module\.({_IDENT})(?:\.({_IDENT}))?")
DATA_REF = re.compile(rf"(?<![\w.])data\.([a-z][a-z0-9_]*)\.({_IDENT})")
EPHEMERAL_REF = re.compile(rf"(?<![\w.])ephemeral\.([a-z][a-z0-9_]*)\.({_IDENT})")
# A managed resource reference: <provider>_<type>.<name>, not preceded by data./ephemeral.
RESOURCE_REF = re.compile(rf"(?<![\w.])((?:aws|random|null|terraform)_[a-z0-9_]+)\.({_IDENT})")


def is_meta(key: str) -> bool:
    """Keys the parser adds to bodies: __is_block__, __comments__, ..."""
    return key.startswith("__") and key.endswith("__")


def unquote(text: str) -> str:
    """A label or string literal without its quotes; expressions are returned unchanged."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def value(body: dict[str, Any], name: str) -> Any:
    """The value of attribute ``name`` of a block body."""
    return body[name]


def literal(body: dict[str, Any], name: str) -> str:
    """The value of a string attribute, unquoted."""
    raw = body[name]
    assert isinstance(raw, str), f"{name} is not a string: {raw!r}"
    return unquote(raw)


def blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The nested blocks called ``name`` of a block body."""
    raw = body.get(name, [])
    return [b for b in raw if isinstance(b, dict)] if isinstance(raw, list) else []


def keys(body: dict[str, Any]) -> set[str]:
    """The attribute and block names of a body (or the keys of an object literal)."""
    return {unquote(k) for k in body if not is_meta(k)}


def strings(node: Any) -> Iterator[str]:
    """Every string below ``node`` (dict keys included: they can be expressions too)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            if is_meta(k):
                continue
            yield k
            yield from strings(v)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def expressions(node: Any) -> Iterator[str]:
    """Strings below ``node`` that hold an expression or an interpolation."""
    return (s for s in strings(node) if "${" in s)


@dataclass
class Module:
    """The declarations of one module directory."""

    path: Path
    files: dict[Path, dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    module_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    ephemeral: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        return self.resources[(rtype, name)]


def parse_file(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        parsed: dict[str, Any] = hcl2.load(fh)
    return parsed


def _named(entries: list[dict[str, Any]], into: dict[str, dict[str, Any]]) -> None:
    for entry in entries:
        for name, body in entry.items():
            if not is_meta(name):
                into[unquote(name)] = body


def _labelled(entries: list[dict[str, Any]], into: dict[tuple[str, str], dict[str, Any]]) -> None:
    for entry in entries:
        for rtype, named in entry.items():
            if is_meta(rtype):
                continue
            for name, body in named.items():
                if not is_meta(name):
                    into[(unquote(rtype), unquote(name))] = body


@cache
def load_module(path: Path) -> Module:
    mod = Module(path=path)
    for tf in sorted(path.glob("*.tf")):
        parsed = parse_file(tf)
        mod.files[tf] = parsed
        _named(parsed.get("variable", []), mod.variables)
        _named(parsed.get("output", []), mod.outputs)
        _named(parsed.get("module", []), mod.module_calls)
        for entry in parsed.get("locals", []):
            mod.locals.update({k: v for k, v in entry.items() if not is_meta(k)})
        _labelled(parsed.get("resource", []), mod.resources)
        _labelled(parsed.get("data", []), mod.data)
        _labelled(parsed.get("ephemeral", []), mod.ephemeral)
    return mod


def module_dirs() -> list[Path]:
    """The root module and every module under modules/."""
    return [TF_ROOT, *sorted(p for p in MODULES_DIR.iterdir() if p.is_dir())]


def tf_files() -> list[Path]:
    return sorted(TF_ROOT.rglob("*.tf"))


def child_path(parent: Module, call: dict[str, Any]) -> Path:
    source = literal(call, "source")
    assert source.startswith("./"), f"local module source expected: {source}"
    return (parent.path / source).resolve()


def unresolved_references(mod: Module) -> list[str]:
    """Every reference in ``mod`` that names nothing declared; empty when all resolve."""
    problems: list[str] = []
    for tf, parsed in mod.files.items():
        where = tf.relative_to(TF_ROOT) if tf.is_relative_to(TF_ROOT) else tf
        for expr in expressions(parsed):
            for name in VAR_REF.findall(expr):
                if name not in mod.variables:
                    problems.append(f"{where}: var.{name} is not declared")
            for name in LOCAL_REF.findall(expr):
                if name not in mod.locals:
                    problems.append(f"{where}: local.{name} is not declared")
            for name, output in MODULE_REF.findall(expr):
                if name not in mod.module_calls:
                    problems.append(f"{where}: module.{name} is not called")
                    continue
                child = load_module(child_path(mod, mod.module_calls[name]))
                if output and output not in child.outputs:
                    problems.append(f"{where}: module.{name}.{output} is not an output of {name}")
            for rtype, name in DATA_REF.findall(expr):
                if (rtype, name) not in mod.data:
                    problems.append(f"{where}: data.{rtype}.{name} is not declared")
            for rtype, name in EPHEMERAL_REF.findall(expr):
                if (rtype, name) not in mod.ephemeral:
                    problems.append(f"{where}: ephemeral.{rtype}.{name} is not declared")
            for rtype, name in RESOURCE_REF.findall(expr):
                if (rtype, name) not in mod.resources:
                    problems.append(f"{where}: {rtype}.{name} is not declared")
    return sorted(set(problems))
