"""The PromQL of every Grafana dashboard panel, ready to send to Prometheus' HTTP API.

``panel_queries`` reads every ``*.json`` dashboard in a folder and returns one entry per
panel target (panels nested in collapsed rows included), with Grafana's variables replaced
by concrete values: the built-in intervals by fixed durations, a dashboard variable that
allows several values or "All" by its ``allValue`` (``.*`` unless set), any other by its
current value. An unknown variable raises ``ValueError``, so a query that Prometheus could
not parse never reaches it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

# Grafana's global variables, as a dashboard looking at the last few minutes would set them.
BUILTIN_VALUES: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}

# $name, ${name}, ${name:format} and the deprecated [[name]] / [[name:format]].
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


def panel_queries(dashboards_dir: Path) -> list[tuple[str, str, str]]:
    """(dashboard title, panel title, PromQL) for every target of every panel, in file
    order, then panel order."""
    queries: list[tuple[str, str, str]] = []
    for path in sorted(dashboards_dir.glob("*.json")):
        dashboard: dict[str, Any] = json.loads(path.read_text())
        values = {**BUILTIN_VALUES, **_dashboard_variables(dashboard)}
        title = str(dashboard.get("title", path.stem))
        for panel in iter_panels(dashboard):
            for target in panel.get("targets") or []:
                expr = str(target.get("expr") or "")
                queries.append((title, str(panel.get("title", "")), substitute(expr, values)))
    return queries


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row, including those inside (collapsed) rows."""
    for panel in dashboard.get("panels") or []:
        if panel.get("type") == "row":
            yield from (p for p in panel.get("panels") or [] if p.get("type") != "row")
        else:
            yield panel


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with every Grafana variable replaced by its value in ``values``."""

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group is not None)
        if name not in values:
            raise ValueError(f"unknown Grafana variable {match.group(0)!r} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def _dashboard_variables(dashboard: Mapping[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for var in (dashboard.get("templating") or {}).get("list") or []:
        name = str(var["name"])
        if var.get("multi") or var.get("includeAll"):
            # "All" (or several values) inside a regex matcher: route=~"$route"
            values[name] = str(var.get("allValue") or ".*")
            continue
        current = (var.get("current") or {}).get("value")
        if isinstance(current, list):
            current = current[0] if len(current) == 1 else None
        if not current and var.get("type") in ("constant", "textbox"):
            current = var.get("query")
        if not isinstance(current, str) or not current:
            raise ValueError(f"dashboard variable {name!r} has no concrete value")
        values[name] = current
    return values
