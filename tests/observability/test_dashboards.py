"""deploy/grafana: the dashboards parse, query only the provisioned Prometheus datasource and
only metrics the docs document, and every query is valid PromQL once Grafana's variables
are substituted; the provisioning files point where compose mounts things."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.containers.dashboards import iter_panels, panel_queries
from tests.observability.documented_metrics import ROOT, undocumented
from tests.observability.promtool import run_promtool

GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARDS_DIR.glob("*.json"))
PANEL_TYPES = {"timeseries", "stat", "gauge"}
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}


def _load(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def _targets(path: Path) -> list[tuple[str, dict[str, Any]]]:
    return [
        (str(panel.get("title")), target)
        for panel in iter_panels(_load(path))
        for target in panel.get("targets") or []
    ]


def test_dashboards_exist_with_unique_uids_and_titles() -> None:
    assert DASHBOARD_FILES, f"no dashboards in {DASHBOARDS_DIR}"
    dashboards = [_load(path) for path in DASHBOARD_FILES]
    uids = [d.get("uid") for d in dashboards]
    titles = [d.get("title") for d in dashboards]
    assert all(uids) and len(set(uids)) == len(uids), uids
    assert all(titles) and len(set(titles)) == len(titles), titles
    for dashboard in dashboards:
        assert dashboard.get("schemaVersion", 0) >= 36, "Grafana 10/11 schema"
        assert "id" not in dashboard or dashboard["id"] is None, "provisioned: no fixed id"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_panel_queries_prometheus(path: Path) -> None:
    dashboard = _load(path)
    panels = list(iter_panels(dashboard))
    assert panels
    ids = [panel.get("id") for panel in dashboard["panels"]] + [
        p.get("id") for row in dashboard["panels"] for p in row.get("panels") or []
    ]
    assert len(set(ids)) == len(ids), "panel ids must be unique in a dashboard"
    for panel in panels:
        title = panel.get("title")
        assert title, "a panel without a title"
        assert panel.get("type") in PANEL_TYPES, f"{title}: type {panel.get('type')}"
        assert panel.get("datasource") == DATASOURCE, f"{title}: datasource"
        grid = panel.get("gridPos") or {}
        assert grid.get("w", 0) > 0 and grid.get("x", 0) + grid.get("w", 0) <= 24, title
        targets = panel.get("targets") or []
        assert targets, f"{title}: no targets"
        for target in targets:
            assert str(target.get("expr") or "").strip(), f"{title}: empty expr"
            assert target.get("datasource", DATASOURCE) == DATASOURCE, f"{title}: datasource"
        ref_ids = [target.get("refId") for target in targets]
        assert len(set(ref_ids)) == len(ref_ids), f"{title}: duplicate refId"
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") == "query":
            assert variable.get("datasource") == DATASOURCE, variable.get("name")


def test_dashboards_use_only_documented_metrics() -> None:
    texts = [expr for _, _, expr in panel_queries(DASHBOARDS_DIR)]
    for path in DASHBOARD_FILES:
        for variable in (_load(path).get("templating") or {}).get("list") or []:
            texts.append(json.dumps(variable.get("query")))
    used = {m for text in texts for m in re.findall(r"queuefront_[a-z_]+", text)}
    assert used, "the dashboards query no queuefront metric"
    assert undocumented("\n".join(texts)) == set(), "metrics docs/operations.md does not list"


def test_panel_queries_returns_one_entry_per_target() -> None:
    queries = panel_queries(DASHBOARDS_DIR)
    expected = [
        (_load(path)["title"], title, target["expr"])
        for path in DASHBOARD_FILES
        for title, target in _targets(path)
    ]
    assert len(queries) == len(expected)
    for (dashboard, title, expr), (want_dashboard, want_title, raw) in zip(
        queries, expected, strict=True
    ):
        assert (dashboard, title) == (want_dashboard, want_title)
        assert "$" not in expr and "[[" not in expr, f"{title}: unsubstituted {expr}"
        if "$" not in raw:
            assert expr == raw


def test_panel_queries_covers_collapsed_rows_and_substitutes(tmp_path: Path) -> None:
    dashboard = {
        "title": "t",
        "templating": {"list": [{"name": "route", "type": "query", "multi": True}]},
        "panels": [
            {
                "type": "timeseries",
                "title": "top",
                "targets": [{"expr": "rate(a[$__rate_interval])"}],
            },
            {
                "type": "row",
                "title": "r",
                "collapsed": True,
                "panels": [
                    {
                        "type": "stat",
                        "title": "inner",
                        "targets": [
                            {"expr": 'sum(increase(b{route=~"${route:regex}"}[$__range]))'},
                            {"expr": "c[[__interval]]"},
                        ],
                    }
                ],
            },
        ],
    }
    (tmp_path / "d.json").write_text(json.dumps(dashboard))
    assert panel_queries(tmp_path) == [
        ("t", "top", "rate(a[1m])"),
        ("t", "inner", 'sum(increase(b{route=~".*"}[5m]))'),
        ("t", "inner", "c15s"),
    ]
    dashboard["panels"] = [{"type": "stat", "title": "x", "targets": [{"expr": "a[$nope]"}]}]
    (tmp_path / "d.json").write_text(json.dumps(dashboard))
    with pytest.raises(ValueError, match="nope"):
        panel_queries(tmp_path)


_PAIRS = {")": "(", "]": "[", "}": "{"}


def _balanced(expr: str) -> bool:
    """Brackets balance outside string literals."""
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    for char in expr:
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\" and quote != "`":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            stack.append(char)
        elif char in _PAIRS and (not stack or stack.pop() != _PAIRS[char]):
            return False
    return not stack and quote is None


def test_every_query_is_balanced() -> None:
    assert _balanced('sum(rate(a{b="(}"}[1m]))') and not _balanced("sum(rate(a[1m])")
    for dashboard, title, expr in panel_queries(DASHBOARDS_DIR):
        assert _balanced(expr), f"{dashboard} / {title}: unbalanced {expr}"


def test_every_query_parses(tmp_path: Path) -> None:
    """promtool has no command that only parses an expression, but `check rules` parses
    every rule's expr: each query becomes a recording rule."""
    queries = panel_queries(DASHBOARDS_DIR)
    lines = ["groups:", "  - name: dashboard-queries", "    rules:"]
    for index, (_, _, expr) in enumerate(queries):
        lines += [f"      - record: dashboard:query_{index}", f"        expr: {json.dumps(expr)}"]
    (tmp_path / "queries.yml").write_text("\n".join(lines) + "\n")
    result = run_promtool(["check", "rules", "queries.yml"], tmp_path)
    output = f"{result.stdout}{result.stderr}"
    failing = [queries[int(i)] for i in re.findall(r"dashboard:query_(\d+)", output)]
    assert result.returncode == 0, f"{output}\nqueries that failed: {failing}"
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_provisioning_points_at_prometheus_and_the_mounted_dashboards() -> None:
    datasource = (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    for line in ("type: prometheus", "uid: prometheus", "url: http://prometheus:9090",
                 "isDefault: true"):  # fmt: skip
        assert re.search(rf"^\s+(- )?{re.escape(line)}\s*(#.*)?$", datasource, re.M), line
    provider = (GRAFANA_DIR / "provisioning" / "dashboards" / "queuefront.yml").read_text()
    for line in ("type: file", "path: /var/lib/grafana/dashboards"):
        assert re.search(rf"^\s+{re.escape(line)}\s*(#.*)?$", provider, re.M), line
