"""Terraform values as python-hcl2 gives them, and the part of HCL's expression language
our modules use to compute the policy's numbers.

Why an evaluator of our own: the simulator must run on what ``deploy/terraform`` says,
never on numbers copied by hand, and those numbers are expressions — ``floor(var.
worker_acceptable_latency_s / var.worker_processing_time_s)``, ``4 * var.admission_
rejections_per_minute``, the metric-math text a ``for`` expression builds. The
``terraform`` binary could evaluate them (``terraform console``), but it needs a provider
mirror and seconds per call, and the simulator runs in ``make test`` and on operators'
laptops. So an expression is translated into Python's syntax (operators, the conditional,
``for`` expressions, object literals, string templates) and the tree is walked with a
fixed set of functions — nothing is ``eval``-ed. What it does not handle (splats,
``%{}`` directives, unknown functions) raises :class:`Unsupported` naming the
expression, so a Terraform change the simulator cannot follow fails loudly.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Value = Any
"""What an expression evaluates to: number, bool, str, None, list, dict or a Symbol."""


class TerraformError(Exception):
    """The Terraform cannot be read the way the simulator needs it: the message says what
    is missing or unsupported and where."""


class Unsupported(TerraformError):
    """An expression form the evaluator does not handle."""


class Unresolvable(TerraformError):
    """A value only known at apply time (a module output, a resource attribute) where a
    number is needed."""


@dataclass(frozen=True)
class Symbol:
    """An apply-time value, kept as the text of its reference (``module.queues.
    queue_names["ingest"]``): the simulator only needs to know which queue or service a
    dimension names, never its AWS name."""

    ref: str

    def attr(self, name: str) -> Symbol:
        return Symbol(f"{self.ref}.{name}")

    def index(self, key: Value) -> Symbol:
        return Symbol(f'{self.ref}["{key}"]')


def unquote(text: str) -> str:
    """python-hcl2 keeps the quotes of string literals and quoted keys: ``'"eu-west-1"'``."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return _decode(text[1:-1])
    return text


def _decode(body: str) -> str:
    return body.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\").replace("$${", "${")


def literal(value: Value) -> Value:
    """A value as python-hcl2 parsed it from a tfvars file or a ``default``: strings and
    keys unquoted, containers converted; an expression is refused (Terraform takes only
    literals there)."""
    if isinstance(value, str):
        if value.startswith("${") and value.endswith("}"):
            inner = value[2:-1].strip()
            if inner in ("true", "false", "null"):
                return {"true": True, "false": False, "null": None}[inner]
            raise Unsupported(f"not a literal value: {value}")
        return unquote(value)
    if isinstance(value, list):
        return [literal(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): literal(v) for k, v in value.items() if not k.startswith("__")}
    return value


# --- translation of HCL expression text into Python source ------------------------------

_OPERATORS = ("&&", "||", "==", "!=", "<=", ">=", "=>")


def _string_end(text: str, i: int) -> int:
    """Index just past the string literal starting at ``text[i] == '"'``; templates'
    ``${…}`` may hold strings of their own."""
    i += 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        if text.startswith("${", i) and not text.startswith("$${", i - 1 if i else 0):
            i = _group_end(text, i + 1)
            continue
        i += 1
    raise Unsupported(f"unterminated string in {text!r}")


def _group_end(text: str, i: int) -> int:
    """Index just past the bracket group opening at ``text[i]``."""
    close = {"(": ")", "[": "]", "{": "}"}[text[i]]
    i += 1
    while i < len(text):
        c = text[i]
        if c == '"':
            i = _string_end(text, i)
            continue
        if c in "([{":
            i = _group_end(text, i)
            continue
        if c == close:
            return i + 1
        if c in ")]}":
            raise Unsupported(f"unbalanced brackets in {text!r}")
        i += 1
    raise Unsupported(f"unbalanced brackets in {text!r}")


def _split(text: str, separators: str) -> list[str]:
    """Splits at the separators that stand outside brackets and strings."""
    parts, start, i = [], 0, 0
    while i < len(text):
        c = text[i]
        if c == '"':
            i = _string_end(text, i)
            continue
        if c in "([{":
            i = _group_end(text, i)
            continue
        if c in separators:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return [p for p in (x.strip() for x in parts) if p]


def _find_top(text: str, token: str) -> int:
    """Index of ``token`` outside brackets and strings (and not part of ``=>``, ``==``,
    ``::``), or -1."""
    i = 0
    while i < len(text):
        c = text[i]
        if c == '"':
            i = _string_end(text, i)
            continue
        if c in "([{":
            i = _group_end(text, i)
            continue
        if text.startswith(token, i):
            return i
        i += 1
    return -1


class _Translator:
    """HCL expression text → Python expression source (see the module notes)."""

    def expr(self, text: str) -> str:
        text = text.strip()
        q = _find_top(text, "?")
        if q >= 0:
            rest = text[q + 1 :]
            c = _find_top(rest, ":")
            if c < 0:
                raise Unsupported(f"conditional without ':' in {text!r}")
            cond, then, other = text[:q], rest[:c], rest[c + 1 :]
            return f"(({self.expr(then)}) if ({self.expr(cond)}) else ({self.expr(other)}))"
        return self._sequence(text).strip()

    def _sequence(self, text: str) -> str:
        out: list[str] = []
        i = 0
        while i < len(text):
            c = text[i]
            if c.isspace():
                out.append(" ")
                i += 1
            elif c == '"':
                end = _string_end(text, i)
                out.append(self._template(text[i + 1 : end - 1]))
                i = end
            elif c == "(":
                end = _group_end(text, i)
                out.append(
                    "(" + ", ".join(self.expr(p) for p in _split(text[i + 1 : end - 1], ",")) + ")"
                )
                i = end
            elif c == "[":
                end = _group_end(text, i)
                out.append(self._list(text[i + 1 : end - 1]))
                i = end
            elif c == "{":
                end = _group_end(text, i)
                out.append(self._object(text[i + 1 : end - 1]))
                i = end
            elif text.startswith("try(", i) and (
                i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "_.")
            ):
                out.append("__try")  # a Python keyword: the evaluator's special form
                i += 3
            elif text.startswith("&&", i):
                out.append(" and ")
                i += 2
            elif text.startswith("||", i):
                out.append(" or ")
                i += 2
            elif c == "!" and not text.startswith("!=", i):
                out.append(" not ")
                i += 1
            elif text.startswith("...", i) or text.startswith("%{", i):
                raise Unsupported(f"'...' and %{{}} are not evaluated: {text!r}")
            elif c == "*" and (
                (i + 1 < len(text) and text[i + 1] in ".]") or (i > 0 and text[i - 1] in ".[")
            ):
                raise Unsupported(f"splat expressions are not evaluated: {text!r}")
            else:
                out.append(c)
                i += 1
        return "".join(out)

    def _template(self, body: str) -> str:
        parts: list[str] = []
        literal_start, i = 0, 0
        while i < len(body):
            if body.startswith("$${", i):
                i += 3
                continue
            if body.startswith("%{", i):
                raise Unsupported(f"template directives are not evaluated: {body!r}")
            if body.startswith("${", i):
                if i > literal_start:
                    parts.append(repr(_decode(body[literal_start:i])))
                end = _group_end(body, i + 1)
                parts.append(f"__str({self.expr(body[i + 2 : end - 1])})")
                i = literal_start = end
                continue
            if body[i] == "\\":
                i += 2
                continue
            i += 1
        if literal_start < len(body) or not parts:
            parts.append(repr(_decode(body[literal_start:])))
        return "(" + " + ".join(parts) + ")"

    def _for_head(self, text: str) -> tuple[str, str, str]:
        """``for a, b in X : REST`` → (python target, iterable source, REST)."""
        colon = _find_top(text, ":")
        if colon < 0:
            raise Unsupported(f"for expression without ':' in {text!r}")
        head, rest = text[3:colon].strip(), text[colon + 1 :]
        names, _, collection = head.partition(" in ")
        targets = [n.strip() for n in names.split(",")]
        source = self.expr(collection)
        if len(targets) == 2:
            return f"({targets[0]}, {targets[1]})", f"__pairs({source})", rest
        return targets[0], f"__values({source})", rest

    def _condition(self, rest: str) -> tuple[str, str]:
        """Splits ``BODY if COND``."""
        at = _find_top(rest, " if ")
        if at < 0:
            return rest, ""
        return rest[:at], f" if ({self.expr(rest[at + 4 :])})"

    def _list(self, body: str) -> str:
        body = body.strip()
        if body == "*":
            raise Unsupported("splat expressions are not evaluated")
        if body.startswith("for "):
            target, source, rest = self._for_head(body)
            value, cond = self._condition(rest)
            return f"[({self.expr(value)}) for {target} in {source}{cond}]"
        return "[" + ", ".join(self.expr(p) for p in _split(body, ",")) + "]"

    def _object(self, body: str) -> str:
        body = body.strip()
        if body.startswith("for "):
            target, source, rest = self._for_head(body)
            item, cond = self._condition(rest)
            arrow = _find_top(item, "=>")
            if arrow < 0:
                raise Unsupported(f"object for expression without '=>' in {body!r}")
            key, value = item[:arrow], item[arrow + 2 :]
            return f"{{({self.expr(key)}): ({self.expr(value)}) for {target} in {source}{cond}}}"
        items = []
        for part in _split(body, ",\n"):
            eq = _find_top(part, "=")
            while eq >= 0 and part[eq + 1 : eq + 2] in ("=", ">"):
                nxt = _find_top(part[eq + 2 :], "=")
                eq = -1 if nxt < 0 else eq + 2 + nxt
            if eq < 0:
                eq = _find_top(part, ":")
            if eq < 0:
                raise Unsupported(f"object item without '=' in {part!r}")
            key = part[:eq].strip()
            key_src = self.expr(key) if key.startswith(('"', "(")) else repr(key)
            items.append(f"{key_src}: ({self.expr(part[eq + 1 :])})")
        return "{" + ", ".join(items) + "}"


def translate(expr: str) -> str:
    """Python source for an HCL expression (exposed for the tests)."""
    return _Translator().expr(expr).strip()


# --- evaluation ------------------------------------------------------------------------

Resolver = Callable[[str], Value]
"""Looks a root name up (``var``, ``local``, ``module``, …): a mapping or a Symbol."""


def _str(v: Value) -> str:
    if isinstance(v, Symbol):
        return f"${{{v.ref}}}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if v is None:
        raise TerraformError("a null value in a string template")
    return str(v)


def _coalesce(*values: Value) -> Value:
    for v in values:
        if v is not None and v != "":
            return v
    raise TerraformError("coalesce: no non-null argument")


def _flatten(items: list[Value]) -> list[Value]:
    out: list[Value] = []
    for item in items:
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def _merge(*maps: Mapping[str, Value]) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for m in maps:
        out.update(m)
    return out


def _pairs(collection: Value) -> Iterator[tuple[Value, Value]]:
    if isinstance(collection, Mapping):
        return iter(sorted(collection.items()))
    return iter(enumerate(collection))


def _values(collection: Value) -> list[Value]:
    if isinstance(collection, Mapping):
        return [v for _, v in sorted(collection.items())]
    return list(collection)


def _number(value: Value, expr: str) -> float | int:
    if isinstance(value, Symbol):
        raise Unresolvable(f"{value.ref} is only known at apply time (in {expr})")
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TerraformError(f"{expr}: expected a number, got {value!r}")
    return value


def _jsonencode(value: Value) -> str:
    """``jsonencode``: an apply-time value inside is written as its reference's text, so a
    document that merely carries an ARN or an id (an OpenAPI body) can be read back."""

    def plain(v: Value) -> Value:
        if isinstance(v, Symbol):
            return _str(v)
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    return json.dumps(plain(value), separators=(",", ":"))


def _regexall(pattern: str, text: str) -> list[Value]:
    """``regexall``: every match; with capture groups, the list of each match's groups
    (Terraform's RE2 syntax: the patterns our modules use are Python's too)."""
    compiled = re.compile(pattern)
    if compiled.groups == 0:
        return [m.group(0) for m in compiled.finditer(text)]
    return [list(m.groups()) for m in compiled.finditer(text)]


def _replace(text: str, old: str, new: str) -> str:
    if len(old) > 1 and old.startswith("/") and old.endswith("/"):
        raise Unsupported(f"replace() with a regular expression ({old}) is not evaluated")
    return text.replace(old, new)


FUNCTIONS: dict[str, Callable[..., Value]] = {
    "max": lambda *a: max(a),
    "min": lambda *a: min(a),
    "floor": math.floor,
    "ceil": math.ceil,
    "abs": abs,
    "coalesce": _coalesce,
    "tostring": _str,
    "tonumber": lambda v: _number(v, "tonumber"),
    "length": len,
    "keys": lambda m: sorted(m),
    "values": _values,
    "contains": lambda seq, v: v in seq,
    "flatten": _flatten,
    "merge": _merge,
    "concat": lambda *lists: [x for seq in lists for x in seq],
    "join": lambda sep, items: sep.join(_str(x) for x in items),
    "lookup": lambda m, k, default=None: m.get(k, default),
    "toset": lambda seq: sorted(set(seq), key=str),
    "tolist": list,
    "jsondecode": json.loads,
    "jsonencode": _jsonencode,
    "distinct": lambda seq: list(dict.fromkeys(seq)),
    "split": lambda sep, text: text.split(sep),
    "lower": lambda text: text.lower(),
    "upper": lambda text: text.upper(),
    "trim": lambda text, cutset: text.strip(cutset),
    "trimprefix": lambda text, prefix: text.removeprefix(prefix),
    "trimsuffix": lambda text, suffix: text.removesuffix(suffix),
    "startswith": lambda text, prefix: text.startswith(prefix),
    "replace": _replace,
    "regexall": _regexall,
    "sort": lambda seq: sorted(seq, key=str),
    "__str": _str,
    "__pairs": _pairs,
    "__values": _values,
}
_NUMERIC = {"max", "min", "floor", "ceil", "abs"}

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Mod: lambda a, b: a % b,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}


class Evaluator:
    """Evaluates expressions against root names; see the module notes for what it takes."""

    def __init__(
        self, resolve: Resolver, functions: Mapping[str, Callable[..., Value]] | None = None
    ) -> None:
        self._resolve = resolve
        self._functions = {**FUNCTIONS, **(functions or {})}

    def value(self, raw: Value) -> Value:
        """A python-hcl2 attribute value: literal, ``${expression}``, template or container."""
        if isinstance(raw, str):
            if raw.startswith("${") and raw.endswith("}") and _group_end(raw, 1) == len(raw):
                return self.expression(raw[2:-1])
            if raw.startswith('"') and "${" in raw.replace("$${", ""):
                return self.expression(raw)
            return unquote(raw)
        if isinstance(raw, list):
            return [self.value(v) for v in raw]
        if isinstance(raw, dict):
            return {self._key(k): self.value(v) for k, v in raw.items() if not k.startswith("__")}
        return raw

    def _key(self, raw: str) -> str:
        """An object key: a name, a quoted string, or ``(expression)``."""
        if raw.startswith("${") and raw.endswith("}"):
            return str(self.value(raw))
        return unquote(raw)

    def number(self, raw: Value, where: str) -> float | int:
        return _number(self.value(raw), where)

    def expression(self, expr: str) -> Value:
        source = translate(expr)
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError as exc:
            raise Unsupported(f"cannot read the expression {expr!r}: {exc.msg}") from None
        return self._eval(tree.body, expr, {})

    def _eval(self, node: ast.AST, expr: str, scope: dict[str, Value]) -> Value:
        ev = self._eval
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in scope:
                return scope[node.id]
            if node.id in ("true", "false", "null"):
                return {"true": True, "false": False, "null": None}[node.id]
            return self._resolve(node.id)
        if isinstance(node, ast.Attribute):
            base = ev(node.value, expr, scope)
            return (
                base.attr(node.attr) if isinstance(base, Symbol) else _member(base, node.attr, expr)
            )
        if isinstance(node, ast.Subscript):
            base = ev(node.value, expr, scope)
            key = ev(node.slice, expr, scope)
            return base.index(key) if isinstance(base, Symbol) else _member(base, key, expr)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left, expr, scope), ev(node.right, expr, scope)
            if isinstance(node.op, ast.Add) and isinstance(left, str) and isinstance(right, str):
                return left + right  # template pieces
            return _BINOPS[type(node.op)](_number(left, expr), _number(right, expr))
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand, expr, scope)
            if isinstance(node.op, ast.USub):
                return -_number(v, expr)
            if isinstance(node.op, ast.Not):
                return not v
        if isinstance(node, ast.BoolOp):
            values = [ev(v, expr, scope) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            left, right = ev(node.left, expr, scope), ev(node.comparators[0], expr, scope)
            return _COMPARE[type(node.ops[0])](left, right)
        if isinstance(node, ast.IfExp):
            test = ev(node.test, expr, scope)
            return ev(node.body if test else node.orelse, expr, scope)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if name == "__try":  # try(): the first argument that evaluates without an error
                for arg in node.args:
                    try:
                        return ev(arg, expr, scope)
                    except Unsupported:
                        raise
                    except (TerraformError, KeyError, IndexError, TypeError):
                        continue
                raise TerraformError(f"try(): no argument could be evaluated (in {expr})")
            if name not in self._functions:
                raise Unsupported(f"function {name}() is not evaluated (in {expr})")
            args = [ev(a, expr, scope) for a in node.args]
            if name in _NUMERIC:
                args = [_number(a, expr) for a in args]
            return self._functions[name](*args)
        if isinstance(node, ast.List | ast.Tuple):
            return [ev(e, expr, scope) for e in node.elts]
        if isinstance(node, ast.Dict):
            return {
                ev(k, expr, scope): ev(v, expr, scope)
                for k, v in zip(node.keys, node.values, strict=True)
                if k is not None
            }
        if isinstance(node, ast.ListComp | ast.DictComp):
            return self._comprehension(node, expr, scope)
        raise Unsupported(f"{type(node).__name__} is not evaluated (in {expr})")

    def _comprehension(
        self, node: ast.ListComp | ast.DictComp, expr: str, scope: dict[str, Value]
    ) -> Value:
        (gen,) = node.generators
        names = (
            [gen.target.id] if isinstance(gen.target, ast.Name) else [e.id for e in gen.target.elts]  # type: ignore[attr-defined]
        )
        items: list[Value] = []
        pairs: dict[Value, Value] = {}
        for element in self._eval(gen.iter, expr, scope):
            values = [element] if len(names) == 1 else list(element)
            inner = {**scope, **dict(zip(names, values, strict=True))}
            if not all(self._eval(c, expr, inner) for c in gen.ifs):
                continue
            if isinstance(node, ast.ListComp):
                items.append(self._eval(node.elt, expr, inner))
            else:
                pairs[self._eval(node.key, expr, inner)] = self._eval(node.value, expr, inner)
        return items if isinstance(node, ast.ListComp) else pairs


def _member(base: Value, key: Value, expr: str) -> Value:
    if isinstance(base, Mapping):
        if key not in base:
            raise TerraformError(f"{key!r} is not defined (in {expr})")
        return base[key]
    if isinstance(base, list) and isinstance(key, int):
        return base[key]
    raise TerraformError(f"cannot take {key!r} of {base!r} (in {expr})")


# --- blocks of a python-hcl2 body ---------------------------------------------------------


def blocks(raw: Value) -> list[dict[str, Value]]:
    """A block attribute as a list (python-hcl2 gives one block or a list of them)."""
    if raw is None:
        return []
    return list(raw) if isinstance(raw, list) else [raw]


def one_block(body: Mapping[str, Value], key: str, where: str) -> dict[str, Value]:
    found = blocks(body.get(key))
    if len(found) != 1:
        raise TerraformError(f"{where}: expected one {key} block")
    return found[0]


def expand_blocks(
    scope: Any, body: Mapping[str, Value], key: str
) -> list[tuple[dict[str, Value], dict[str, Value]]]:
    """The ``key`` blocks of ``body``, with ``dynamic "key"`` blocks expanded: pairs of
    (block, extra names the block's expressions see). ``scope`` evaluates the
    ``for_each`` (a module's scope: ``bench.scaling.terraform.Scope``)."""
    out: list[tuple[dict[str, Value], dict[str, Value]]] = [(b, {}) for b in blocks(body.get(key))]
    for dyn in blocks(body.get("dynamic")):
        for name, spec in dyn.items():
            if unquote(name) != key:
                continue
            iterator = unquote(str(spec.get("iterator", name)))
            items = scope.value(spec["for_each"])
            pairs = items.items() if isinstance(items, Mapping) else enumerate(items)
            content = one_block(spec, "content", f"dynamic {key}")
            for k, v in pairs:
                out.append((content, {iterator: {"key": k, "value": v}}))
    return out
