"""The metric names the "Metrics" table of docs/operations.md documents, and which of them
are histograms (from the code)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from prometheus_client import Histogram

from queuefront import metrics

ROOT = Path(__file__).resolve().parents[2]
METRIC_NAME = re.compile(r"\bqueuefront_[a-z_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@cache
def documented_metrics() -> frozenset[str]:
    page = (ROOT / "docs" / "operations.md").read_text()
    section = page.split("\n## Metrics", 1)[1].split("\n## ", 1)[0]
    names = frozenset(re.findall(r"^\| `(queuefront_[a-z_]+)` \|", section, flags=re.M))
    assert names, "no metrics table found in the Metrics section of docs/operations.md"
    return names


@cache
def histograms() -> frozenset[str]:
    return frozenset(
        family.name
        for value in vars(metrics).values()
        if isinstance(value, Histogram)
        for family in value.describe()
    )


def undocumented(text: str) -> set[str]:
    """Metric names in ``text`` that the docs do not list (a histogram's
    _bucket/_sum/_count series count as the histogram)."""
    unknown: set[str] = set()
    for name in METRIC_NAME.findall(text):
        if name in documented_metrics():
            continue
        base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        if base is not None and base in documented_metrics() and base in histograms():
            continue
        unknown.add(name)
    return unknown
