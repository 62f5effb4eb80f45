"""The api's scaling signal (service/scaling_signal.py): each line is an embedded-metric-
format document CloudWatch accepts (AWS's JSON schema and the rules a schema cannot say),
its values are the backlog monitor's, and Terraform reads the names the api writes."""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest
from redis.asyncio import Redis

from queuefront import metrics
from queuefront.drain import DrainEstimate
from queuefront.keys import Keys
from service.admission import BacklogMonitor
from service.scaling_signal import (
    METRICS,
    STORAGE_RESOLUTION_S,
    CpuMeter,
    Sample,
    ScalingSignal,
    document,
    parse_dimensions,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).parent / "data" / "emf-schema.json").read_text())
MAX_EVENT_BYTES = 256 * 1024
"""A CloudWatch Logs event, and so an EMF document, is at most 256 KB (EMF specification)."""


def assert_emf(line: str) -> dict[str, Any]:
    """One log event that CloudWatch Logs turns into metrics: a JSON object alone on its
    line, valid against the EMF schema, every reference naming a root member of the right
    kind (EMF specification: "Target members")."""
    assert "\n" not in line and len(line.encode()) <= MAX_EVENT_BYTES
    doc = json.loads(line)
    assert isinstance(doc, dict)
    jsonschema.validate(doc, SCHEMA)
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for key in dimension_set:
                assert isinstance(doc.get(key), str), f"dimension {key} is not a root string"
        for metric in directive["Metrics"]:
            value = doc.get(metric["Name"])
            assert isinstance(value, int | float) and not isinstance(value, bool), metric
            assert math.isfinite(value)
    return doc


def monitor(**state: Any) -> BacklogMonitor:
    """A real backlog monitor whose state is set as its poll would set it."""
    m = BacklogMonitor(
        {},
        cast(Redis, None),
        Keys(""),
        threshold=100,
        wait_s=5.0,
        poll_s=1.0,
        predictive=True,
    )
    m.backlog = state.get("backlog", {"high": 0, "normal": 0})
    m.estimate = state.get("estimate", DrainEstimate())
    m.last_ok = time.monotonic() if state.get("healthy", True) else 0.0
    return m


def signal(m: BacklogMonitor, **kw: Any) -> ScalingSignal:
    return ScalingSignal(
        m,
        kw.pop("pending", lambda: 7),
        interval_s=5.0,
        namespace="queuefront/scaling",
        dimensions={"Stack": "prod"},
        clock_ms=lambda: 1_700_000_000_123,
        **kw,
    )


def test_a_line_is_an_emf_document_of_high_resolution_metrics() -> None:
    est = DrainEstimate(rate=37.5, service_s=1.6, potential=60.0, live_workers=3)
    sig = signal(monitor(backlog={"high": 12, "normal": 30}, estimate=est))
    doc = assert_emf(sig.line() or "")
    meta = doc["_aws"]
    assert meta["Timestamp"] == 1_700_000_000_123
    (directive,) = meta["CloudWatchMetrics"]
    assert directive["Namespace"] == "queuefront/scaling"
    assert directive["Dimensions"] == [["Stack"]] and doc["Stack"] == "prod"
    declared = {m["Name"]: m for m in directive["Metrics"]}
    assert set(declared) == {name for name, _ in METRICS.values()}
    assert {m["StorageResolution"] for m in declared.values()} == {STORAGE_RESOLUTION_S} == {1}
    assert {name: m["Unit"] for name, m in declared.items()} == dict(METRICS.values())


def test_the_values_are_the_monitors() -> None:
    est = DrainEstimate(rate=37.5, service_s=1.6, potential=60.0, live_workers=3)
    m = monitor(backlog={"high": 12, "normal": 30}, estimate=est)
    pending = [7]
    sig = signal(m, pending=lambda: pending[0])
    doc = assert_emf(sig.line() or "")
    assert doc["QueueBacklog"] == 42
    assert doc["DrainRate"] == pytest.approx(est.rate)
    assert doc["DrainCapacity"] == pytest.approx(est.potential)
    assert doc["PredictedWait"] == pytest.approx(m.predicted_wait_s("normal"))
    assert doc["PendingReplies"] == 7
    # the next line: what the monitor reads then
    m.backlog = {"high": 0, "normal": 5}
    m.estimate = DrainEstimate(rate=12.0, service_s=0.5, potential=64.0, live_workers=1)
    pending[0] = 2
    doc = assert_emf(sig.line() or "")
    assert (doc["QueueBacklog"], doc["DrainRate"], doc["DrainCapacity"]) == (5, 12.0, 64.0)
    assert doc["PredictedWait"] == pytest.approx(m.predicted_wait_s("normal"))
    assert doc["PendingReplies"] == 2


def test_what_is_not_known_is_left_out_not_written_as_a_number() -> None:
    # workers report but none has completed anything: no service time, an unbounded
    # potential; the line declares only what it carries
    est = DrainEstimate(rate=0.0, service_s=0.0, potential=math.inf, live_workers=2)
    doc = assert_emf(signal(monitor(estimate=est)).line() or "")
    assert "DrainCapacity" not in doc
    names = {m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert "DrainCapacity" not in names and "QueueBacklog" in names
    # no live worker: nothing drains, which is a capacity of zero
    doc = assert_emf(signal(monitor(estimate=DrainEstimate())).line() or "")
    assert doc["DrainCapacity"] == 0


def test_refusals_are_the_count_since_the_last_line() -> None:
    sig = signal(monitor())
    assert assert_emf(sig.line() or "")["AdmissionRefusals"] == 0
    for reason in ("predicted_wait", "pending_limit", "predicted_wait"):
        metrics.ADMISSION_REJECTIONS.labels("scaling-signal-test", reason).inc()
    assert assert_emf(sig.line() or "")["AdmissionRefusals"] == 3
    assert assert_emf(sig.line() or "")["AdmissionRefusals"] == 0


def test_nothing_is_written_while_the_backlog_cannot_be_read() -> None:
    out = io.StringIO()
    m = monitor(healthy=False, backlog={"high": 0, "normal": 999})
    sig = signal(m, stream=out)
    assert sig.emit() is False and out.getvalue() == ""
    m.last_ok = time.monotonic()
    assert sig.emit() is True
    (line,) = out.getvalue().splitlines()
    assert assert_emf(line)["QueueBacklog"] == 999


def test_cpu_is_this_process_over_the_interval() -> None:
    cpu, wall = [10.0], [100.0]
    meter = CpuMeter(lambda: cpu[0], lambda: wall[0])
    cpu[0], wall[0] = 10.5, 101.0
    assert meter.read() == pytest.approx(50.0)
    cpu[0], wall[0] = 12.5, 103.0
    assert meter.read() == pytest.approx(100.0)
    assert meter.read() is None  # no time passed: no reading
    sig = signal(monitor(), cpu=CpuMeter(lambda: cpu[0], lambda: wall[0]))
    assert "CpuUtilization" not in assert_emf(sig.line() or "")  # no time: left out
    cpu[0], wall[0] = 12.7, 105.0
    assert assert_emf(sig.line() or "")["CpuUtilization"] == pytest.approx(10.0)


def test_dimensions_are_stack_level_names_and_values() -> None:
    assert parse_dimensions("Stack=prod, Region = eu") == {"Stack": "prod", "Region": "eu"}
    assert parse_dimensions("") == {}
    for bad in ("Stack", "=prod", "Stack=", "QueueBacklog=x", "_aws=x"):
        with pytest.raises(ValueError):
            parse_dimensions(bad)
    with pytest.raises(ValueError, match="at most 9"):
        parse_dimensions(",".join(f"D{i}=v" for i in range(10)))


def test_a_document_without_dimensions_is_still_valid() -> None:
    values = Sample(1, 2.0, 3.0, None, 0.0, 0, 12.5)
    doc = assert_emf(json.dumps(document(values, "ns", {}, 1)))
    assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[]]


def test_terraform_reads_the_names_the_api_writes() -> None:
    spec = json.loads((ROOT / "deploy" / "terraform" / "scaling_signal.json").read_text())
    assert spec["metrics"] == {key: name for key, (name, _) in METRICS.items()}
    from queuefront.settings import Settings

    assert spec["namespace"] == Settings.model_fields["scaling_signal_namespace"].default
