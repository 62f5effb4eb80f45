"""deploy/prometheus: promtool accepts the config and the rules, the alert unit tests pass,
and the scrape jobs and rules match the compose services and the documented metrics."""

from __future__ import annotations

import re

import pytest

from tests.observability.documented_metrics import ROOT, undocumented
from tests.observability.promtool import run_promtool

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
CONFIG = (PROMETHEUS_DIR / "prometheus.yml").read_text()
ALERTS = (PROMETHEUS_DIR / "alerts.yml").read_text()
ALERTS_TEST = (PROMETHEUS_DIR / "alerts_test.yml").read_text()


@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool_accepts(args: list[str]) -> None:
    result = run_promtool(args, PROMETHEUS_DIR)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"


def _scrape_jobs() -> dict[str, str]:
    """job name → its text, up to the next job."""
    jobs = re.split(r"^\s*- job_name:\s*", CONFIG.split("scrape_configs:", 1)[1], flags=re.M)
    return {block.split()[0]: block for block in jobs[1:]}


@pytest.mark.parametrize(("service", "port"), [("api", 9100), ("worker", 9100), ("writer", 9100)])
def test_every_compose_service_is_scraped_per_replica(service: str, port: int) -> None:
    job = _scrape_jobs().get(service)
    assert job is not None, f"no scrape job {service!r}"
    assert "dns_sd_configs:" in job, f"{service}: replicas are found with dns_sd_configs"
    assert re.search(rf"names:\s*\[\s*{service}\s*\]", job), f"{service}: DNS name"
    assert re.search(r"type:\s*A\b", job), f"{service}: one A record per replica"
    assert re.search(rf"port:\s*{port}\b", job), f"{service}: metrics port {port}"
    assert "static_configs" not in job


def test_scrape_interval_is_short_and_rules_are_loaded() -> None:
    assert re.search(r"^\s+scrape_interval:\s*5s\b", CONFIG, flags=re.M)
    assert re.search(r"^rule_files:\s*\n\s+- (/etc/prometheus/)?alerts\.yml\s", CONFIG, re.M)


def _alerts(text: str) -> dict[str, str]:
    blocks = re.split(r"^\s*- alert:\s*", text, flags=re.M)
    return {block.split()[0]: block for block in blocks[1:]}


def test_every_alert_has_for_severity_and_annotations() -> None:
    alerts = _alerts(ALERTS)
    assert len(alerts) >= 6
    for name, block in alerts.items():
        assert re.search(r"^\s+for:\s*\d+[smh]\b", block, re.M), f"{name}: no `for:`"
        assert re.search(r"^\s+severity:\s*(warning|critical)\b", block, re.M), name
        assert re.search(r"^\s+summary:", block, re.M), f"{name}: no summary"
        assert re.search(r"^\s+description:", block, re.M), f"{name}: no description"


def test_the_required_alerts_exist() -> None:
    exprs = "\n".join(_alerts(ALERTS).values())
    for needle in (
        "queuefront_dlq_messages",
        "queuefront_message_age_seconds_bucket",
        'queuefront_http_requests_total{status="504"}',
        "queuefront_admission_rejections_total",
        "queuefront_ingest_lag_seconds_bucket",
        "queuefront_clock_offset_seconds",
        "up{",
    ):
        assert needle in exprs, f"no alert uses {needle}"


def test_every_alert_has_a_unit_test() -> None:
    tested = set(re.findall(r"^\s+alertname:\s*(\w+)", ALERTS_TEST, flags=re.M))
    assert set(_alerts(ALERTS)) - tested == set(), "alerts without a case in alerts_test.yml"
    firing = re.findall(r"alertname:\s*(\w+)\n\s+exp_alerts:\s*\n\s+- exp_labels", ALERTS_TEST)
    assert set(_alerts(ALERTS)) - set(firing) == set(), "alerts never shown firing"


def test_alert_rules_use_documented_metrics() -> None:
    assert undocumented(ALERTS) == set(), "metrics docs/operations.md does not list"
