"""The metric names the README's "Metrics" table documents, and which of them are
histograms (from the code, since the table does not say it for every one)."""

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
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    names = frozenset(re.findall(r"^\| `(queuefront_[a-z_]+)` \|", section, flags=re.M))
    assert names, "no metrics table found in the README's Metrics section"
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
    """Metric names in ``text`` that the README does not list (a histogram's
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
