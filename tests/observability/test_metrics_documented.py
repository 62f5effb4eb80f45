"""docs/operations.md lists every metric the processes export, and only those.

The table is generated from the definitions in ``queuefront.metrics``; this catches a
metric defined anywhere else (in a registry of its own), which the generator would miss.
"""

from __future__ import annotations

import ast
import re

from queuefront import docgen
from tests.observability.documented_metrics import ROOT, documented_metrics, undocumented

SOURCES = ("queuefront", "service", "workers")
METRIC_LITERAL = re.compile(r"queuefront_[a-z_]+")


def metric_names_in_code() -> set[str]:
    """Every string constant of the processes' code that is a metric name as a whole (a
    docstring mentioning one is no definition)."""
    names: set[str] = set()
    for package in SOURCES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and METRIC_LITERAL.fullmatch(node.value)
                ):
                    names.add(node.value)
    return names


def test_every_metric_the_code_names_is_documented() -> None:
    names = metric_names_in_code()
    assert "queuefront_http_requests_total" in names, "the scan found no metric definitions"
    assert undocumented("\n".join(sorted(names))) == set(), (
        "metrics missing from docs/operations.md: define them in queuefront/metrics.py "
        f"and run `{docgen.COMMAND}`"
    )


def test_only_exported_metrics_are_documented() -> None:
    exported = {m.name for m in docgen.documented_metrics()}
    assert documented_metrics() - exported == set(), (
        f"docs/operations.md lists metrics no process exports: run `{docgen.COMMAND}`"
    )
